"""Chat formats: token by token, only assistant answers and their end-of-turn token are labels."""

from __future__ import annotations

import pytest
import sft_tiny
from sft_tiny import WORDS, make_tokenizer

from sft.templates import (
    BAYLING_SYSTEM,
    TemplateError,
    conversation_pieces,
    resolve_format,
    tokenize_conversations,
)

# fixtures shared by the sft test modules (sft_tiny)
tiny = sft_tiny.tiny

TWO_TURNS = [
    {"role": "user", "content": "Translate into Swahili:\n\nthe cat sat"},
    {"role": "assistant", "content": "habari ya leo"},
    {"role": "user", "content": "Now shorter."},
    {"role": "assistant", "content": "jina"},
]


def expected_tokens(tokenizer, pieces: list[tuple[str, bool]]) -> tuple[list[int], list[bool]]:
    """Ids and labels written out independently of the code under test: each literal piece tokenized alone."""
    ids, trained = [], []
    for text, is_label in pieces:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        trained += [is_label] * len(piece)
    return ids, trained


def check(tokenizer, template: str, messages, literal: list[tuple[str, bool]], system_prompt=None):
    fmt = resolve_format(template, tokenizer, system_prompt)
    ids, trained = tokenize_conversations(fmt, tokenizer, [messages])[0]
    want_ids, want_trained = expected_tokens(tokenizer, literal)
    assert ids == want_ids
    assert trained == want_trained
    assert fmt.render(tokenizer, messages) == "".join(text for text, _ in literal)
    return fmt, ids, trained


def test_bayling_format_labels_each_answer_and_its_eos(tiny):
    tok = tiny.tokenizer
    literal = [
        (f"<s>{BAYLING_SYSTEM}\n\n### Instruction:\nTranslate into Swahili:\n\nthe cat sat\n### Response:\n", False),
        ("habari ya leo</s>", True),
        ("\n### Instruction:\nNow shorter.\n### Response:\n", False),
        ("jina</s>", True),
    ]
    fmt, ids, trained = check(tok, "bayling", TWO_TURNS, literal)
    assert fmt.end_of_turn == "</s>"
    eos = tok.eos_token_id
    assert [i for i, t in zip(ids, trained, strict=True) if t].count(eos) == 2  # both turns end with a trained </s>
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id  # one BOS, written by the template


def test_bayling3_format_uses_llama3_headers(tiny):
    tok = tiny.tokenizer
    head = "<|start_header_id|>{}<|end_header_id|>\n\n"
    literal = [
        ("<s>" + head.format("system") + BAYLING_SYSTEM + "<|eot_id|>" + head.format("user")
         + "Translate into Swahili:\n\nthe cat sat<|eot_id|>" + head.format("assistant"), False),
        ("habari ya leo<|eot_id|>", True),
        (head.format("user") + "Now shorter.<|eot_id|>" + head.format("assistant"), False),
        ("jina<|eot_id|>", True),
    ]
    fmt, ids, trained = check(tok, "bayling3", TWO_TURNS, literal)
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert fmt.end_of_turn == "<|eot_id|>"
    assert ids[-1] == eot and trained[-1]
    # the header tokens are single special tokens, never labels
    header = tok.convert_tokens_to_ids("<|start_header_id|>")
    assert header in ids and not any(t for i, t in zip(ids, trained, strict=True) if i == header)


def test_model_template_with_system_prompt_and_no_double_bos(tiny):
    tok = tiny.tokenizer
    head = "<|start_header_id|>{}<|end_header_id|>\n\n"
    literal = [
        ("<s>" + head.format("system") + "Be brief.<|eot_id|>" + head.format("user")
         + "Translate into Swahili:\n\nthe cat sat<|eot_id|>" + head.format("assistant"), False),
        ("habari ya leo<|eot_id|>", True),
        (head.format("user") + "Now shorter.<|eot_id|>" + head.format("assistant"), False),
        ("jina<|eot_id|>", True),
    ]
    fmt, ids, _ = check(tok, "auto", TWO_TURNS, literal, system_prompt="Be brief.")
    assert fmt.name == "model"
    # The tokenizer adds BOS by itself (like Llama's): tokenizing the rendered text naively would double it.
    naive = tok(fmt.render(tok, TWO_TURNS))["input_ids"]
    assert naive[:2] == [tok.bos_token_id, tok.bos_token_id]
    assert ids.count(tok.bos_token_id) == 1


def test_conversation_system_message_wins_and_empty_prompt_means_none(tiny):
    tok = tiny.tokenizer
    own = [{"role": "system", "content": "Only Swahili."}] + TWO_TURNS[:2]
    text = resolve_format("bayling", tok).render(tok, own)
    assert text.startswith("<s>Only Swahili.\n\n### Instruction:") and BAYLING_SYSTEM not in text
    bare = resolve_format("bayling", tok, system_prompt="").render(tok, TWO_TURNS[:2])
    assert bare.startswith("<s>### Instruction:\n")


def test_pieces_concatenate_to_the_rendering_and_trailing_user_turn_is_dropped(tiny):
    tok = tiny.tokenizer
    fmt = resolve_format("bayling3", tok)
    pieces = conversation_pieces(fmt, tok, TWO_TURNS + [{"role": "user", "content": "thanks"}])
    assert "".join(p for p, _ in pieces) == fmt.render(tok, TWO_TURNS)
    assert [t for _, t in pieces] == [False, True, False, True]
    assert tokenize_conversations(fmt, tok, [TWO_TURNS[:1]]) == [([], [])]  # no answer: nothing to train


def test_template_needing_tokens_the_vocabulary_lacks_is_a_mismatch(tmp_path):
    plain = make_tokenizer(tmp_path, [" ".join(WORDS)] * 5, vocab_size=300, chat_template=None,
                           specials=["<pad>", "<s>", "</s>"])
    with pytest.raises(TemplateError, match="mismatch.*header_id"):
        resolve_format("bayling3", plain)
    with pytest.raises(TemplateError, match="no chat template"):
        resolve_format("model", plain)
    assert resolve_format("auto", plain).name == "bayling"  # no template of its own: BayLing's


def test_unusable_templates_are_refused(tiny, tmp_path):
    tok = tiny.tokenizer
    hides_past = tmp_path / "hides.jinja"
    hides_past.write_text(
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}"
        "{% if loop.last %}A: {{ m['content'] }}</s>{% else %}A: ...</s>{% endif %}"
        "{% else %}U: {{ m['content'] }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}A: {% endif %}")
    fmt = resolve_format(str(hides_past), tok)
    with pytest.raises(TemplateError, match="prefix-stable"):
        tokenize_conversations(fmt, tok, [TWO_TURNS])
    no_end = tmp_path / "no_end.jinja"
    no_end.write_text("{% for m in messages %}{{ m['content'] }}\n{% endfor %}")
    with pytest.raises(TemplateError, match="end-of-turn"):
        resolve_format(str(no_end), tok)
    twice = tmp_path / "twice.jinja"
    twice.write_text("{{ bos_token }}{{ bos_token }}{% for m in messages %}{{ m['content'] }}"
                     "{% if m['role'] == 'assistant' %}</s>{% endif %}{% endfor %}")
    with pytest.raises(TemplateError, match="BOS twice"):
        tokenize_conversations(resolve_format(str(twice), tok), tok, [TWO_TURNS[:2]])


def sentencepiece_style_tokenizer(folder):
    """Llama-2 / Mistral style: BPE over Metaspace(prepend_scheme="first", split=False), where a text's first word
    gets a "▁" prefix; trained offline on BayLing renderings of tiny conversations."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    texts = [f"{BAYLING_SYSTEM}\n\n### Instruction:\n{' '.join(WORDS[i:i + 6])}\n### Response:\n"
             f"{' '.join(WORDS[i + 3:i + 8])}" for i in range(len(WORDS) - 8)] * 3
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>",
                                                                                      "<pad>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.save_pretrained(folder)
    return fast


def test_sentencepiece_answers_are_trained_as_they_appear_in_context(tmp_path):
    """Labels from character offsets of the one rendering: the trained tokens spell exactly each answer and its
    </s>, with no stray "▁" that tokenizing the answer on its own would put in front of it."""
    tok = sentencepiece_style_tokenizer(tmp_path)
    fmt = resolve_format("bayling", tok)
    ids, trained = tokenize_conversations(fmt, tok, [TWO_TURNS])[0]
    assert ids == tok(fmt.render(tok, TWO_TURNS), add_special_tokens=False)["input_ids"]  # the text as the model reads it

    def spelled(token_ids):  # the tokens' own text: "▁" is a space, nothing stripped (decode() would hide a "▁")
        return "".join(tok.convert_ids_to_tokens(token_ids)).replace("▁", " ")

    turns, current = [], []
    for i, t in zip(ids, trained, strict=True):
        if t:
            current.append(i)
        elif current:
            turns.append(current)
            current = []
    turns.append(current) if current else None
    assert [spelled(t) for t in turns] == ["habari ya leo</s>", "jina</s>"]
    assert [tok.decode(t) for t in turns] == ["habari ya leo</s>", "jina</s>"]
    # what the old way (each piece tokenized alone) trained: the answer as the start of a text, "▁" in front
    alone = tok("habari ya leo</s>", add_special_tokens=False)["input_ids"]
    assert spelled(alone) == " habari ya leo</s>" and alone != turns[0]
