from __future__ import annotations

from generation.facts import missing_facts, negations, quantities, scattered
from generation.sentences import split_sentences


def values(text: str) -> list[tuple[float, bool]]:
    return [(q.value, q.percent) for q in quantities(text, claim=True)]


def test_numbers_are_normalised_however_they_are_written() -> None:
    assert values("92 %") == values("92%") == values("92 percent") == [(92.0, True)]
    assert values("48,200 parcels") == values("48 200 parcels") == [(48200.0, False)]
    assert values("9.82 亿元") == [(982_000_000.0, False)]
    assert values("1,5 milliard") == [(1.5, False)]  # a decimal comma
    assert values("eight weeks") == [(8.0, False)]
    assert values("twenty-five days") == [(25.0, False)]
    assert values("十二名队员") == [(12.0, False)]
    assert values("百分之三十六") == [(36.0, True)]
    assert values("3.5 million") == [(3_500_000.0, False)]
    # Not numbers: identifiers, "one of", words that hold a CJK numeral.
    assert values("IL-6 and COVID-19 in p53 cells") == []
    assert values("one of the teams 统一的") == []


def test_dates_match_across_notations() -> None:
    assert missing_facts("It was adopted on 5 March 2019.", "Adopted 2019-03-05.") is None
    assert missing_facts("于2019年3月5日通过。", "It was adopted on 5 March 2019.") is None
    assert missing_facts("It was adopted on 5 May 2019.", "Adopted 2019-03-05.") is not None


def test_a_number_the_source_does_not_hold_is_the_reason() -> None:
    header = "Team | Code | Stanley Cups"
    reason = missing_facts(
        "The Maple Leafs have won 1 Stanley Cup.", "Maple Leafs | TOR | 13", context=header
    )
    assert reason == "number 1 not in the source; the source says 13"
    assert missing_facts("The Maple Leafs have won 1 Stanley Cup.", "Maple Leafs | TOR | 13") == (
        "number 1 not in the source; the source says 13; 'Stanley' not in the source; "
        "'Cup' not in the source"
    )
    assert missing_facts("The Maple Leafs have won 13 Stanley Cups.", "Maple Leafs | TOR | 13",
                         context="Team | Code | Stanley Cups") is None  # fmt: skip


def test_a_percentage_is_not_a_day_of_the_month() -> None:
    source = "Adopté le 20 août 2023. En 2030, 92 % des trajets seront couverts."
    reason = missing_facts("En 2030, 20 % des trajets seront couverts.", source)
    assert reason == "number 20 % not in the source; the source says 92 %"
    assert missing_facts("En 2030, 92 % des trajets seront couverts.", source) is None


def test_names_and_negation_must_match() -> None:
    source = "Globex Corporation reported revenue of $4.2 billion in fiscal 2023."
    assert missing_facts("Initech Corporation reported revenue of $4.2 billion.", source) == (
        "'Initech' not in the source"
    )
    assert missing_facts("Globex did not report revenue in 2023.", source) == (
        "the claim says 'not', the source does not"
    )
    assert missing_facts("X increases Y.", "X does not increase Y.") == (
        "the source says 'not', the claim does not"
    )
    assert negations("这不仅不同，而且非常好") == []  # words that merely hold 不/非
    assert negations("不得进行配对") == ["不"]


def test_sentences_split_where_a_reader_means_them() -> None:
    assert split_sentences('He said "Stop!" and left. Next one.') == [
        'He said "Stop!" and left.', "Next one.",
    ]  # fmt: skip
    assert split_sentences("账面价值9.82亿元。第二句！") == ["账面价值9.82亿元。", "第二句！"]
    assert split_sentences("Team | Cups\nMaple Leafs | 13") == ["Team | Cups", "Maple Leafs | 13"]


def test_names_are_looked_for_in_the_span_not_anywhere_in_the_chunk() -> None:
    chunk = "Globex is based in Springfield. Its rival Initech reported revenue of $4.2 billion."
    span = "Its rival Initech reported revenue of $4.2 billion."
    assert missing_facts("Revenue at Globex was $4.2 billion.", span, chunk=chunk) == (
        "'Globex' not in the quoted span (the source names it elsewhere)"
    )
    # A heading names what the whole chunk is about.
    titled = "Globex annual report\n" + span
    assert missing_facts("Revenue at Globex was $4.2 billion.", span, chunk=titled) is None
    # Written differently, still the same name.
    assert missing_facts("C2 acts with A-769662.", "C2 acts with the drug A769662.") is None
    assert (
        missing_facts("It lowers SREBP2.", "It lowers Sterol Regulatory Element-Binding Protein-2.")
        is None
    )
    assert missing_facts(
        "It lowers SREBP1.", "It lowers Sterol Regulatory Element-Binding Protein-2."
    ) == ("'SREBP1' not in the source")


def test_a_negation_dropped_from_copied_text_is_a_contradiction() -> None:
    assert missing_facts("The policy reduces costs.", "The policy does not reduce costs.") == (
        "the source says 'not', the claim does not"
    )
    assert missing_facts("The policy doesn't reduce costs.", "The policy does reduce costs.") == (
        'the claim says "n\'t", the source does not'
    )
    assert (
        missing_facts("造型上同以往。", "造型上不同以往。")
        == "the source says '不', the claim does not"
    )
    assert missing_facts("造型上不同以往。", "造型上不同以往。") is None


def test_a_chinese_claim_is_stated_only_where_its_parts_stand_together() -> None:
    source = (
        "芙蓉洞位于重庆武隆县江口镇的芙蓉江畔，距武隆县城20公里。"
        "芙蓉洞于1993被发现，1994年对游人开放。"
    )
    assert scattered("芙蓉洞位于1994年地方。", source)
    assert not scattered("芙蓉洞于1994年对游人开放。", source)
    assert not scattered("芙蓉洞位于芙蓉江畔。", source)
    assert not scattered("The cave opened in 1994.", source)  # not a CJK claim


def test_a_bracketed_aside_does_not_part_what_it_interrupts() -> None:
    source = (
        "富国银行广场（Wells Fargo Bank Plaza，前称西北银行中心（Norwest Center）），"
        "位于美国明尼亚波利斯。"
    )
    assert not scattered("富国银行广场位于美国明尼亚波利斯。", source)
    # Without the aside the parts would still be far apart: the rule stays.
    far = "富国银行广场是一座楼高54层、高235.6米的摩天大楼，由西萨·佩里设计，位于美国明尼亚波利斯。"
    assert scattered("富国银行广场位于美国明尼亚波利斯。", far)


def test_an_acronym_the_claim_spells_out_is_checked_by_its_words() -> None:
    source = "The secretion of matrix metalloproteases disassembles adhesions."
    claim = "Secretion of matrix metalloproteases (MMPs) disassembles adhesions."
    assert missing_facts(claim, source) is None
    # An acronym the claim's words do not spell is a name like any other.
    other = "Secretion of matrix proteins (TIMPs) disassembles adhesions."
    assert missing_facts(other, source) == "'TIMPs' not in the source"
    # A capitalised first word before an identifier is capitalised by position, not a name.
    activated = "Activated Cdk5 regulates neuronal death."
    assert missing_facts(activated, "Cdk5 regulates neuronal death.") is None


def test_a_but_not_qualifier_negates_only_what_it_names() -> None:
    source = "ApoE4 increased Aβ production in human, but not in mouse, neurons."
    assert missing_facts("ApoE4 increased Aβ production in human neurons.", source) is None
    assert missing_facts("ApoE4 increased Aβ production in mouse neurons.", source) == (
        "the source says 'not', the claim does not"
    )
