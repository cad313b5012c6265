"""Tiny random-weight models written to disk, for testing the task paths that no shipped model covers.

Each builder writes a folder that loads with `from_pretrained(folder)` exactly as a user's model would:
config.json, model.safetensors, generation_config.json (generative models) and a real tokenizer
(tokenizer.json + tokenizer_config.json) trained with the `tokenizers` library on the small corpus
below. The weights are random, so outputs are garbage; what the tests can rely on is the *shape* of
everything: special tokens, label maps, decoder start ids, FIM tokens, chat templates.

Builds take well under a second each and write under 1.5 MB. Weights come from a fixed seed. The
`tokenizers` trainers break frequency ties in hash order, so token ids can differ between processes;
within one process each trained tokenizer is cached, so repeated builds are byte-identical.
Hidden sizes and vocabulary sizes are multiples of 32 (bitsandbytes 4-bit needs that).

Which transformers class each kind matches:

| builder                     | Auto class                              | pipeline task              |
|-----------------------------|-----------------------------------------|----------------------------|
| build_seq2seq               | AutoModelForSeq2SeqLM (marian, t5, bart)| none in transformers 5     |
| build_text_classification   | AutoModelForSequenceClassification (bert)| text-classification       |
| build_zero_shot             | AutoModelForSequenceClassification (bert, NLI labels) | zero-shot-classification |
| build_token_classification  | AutoModelForTokenClassification (bert)  | token-classification       |
| build_fim_causal_lm         | AutoModelForCausalLM (llama, gpt2, qwen2)| text-generation           |
| build_chat_causal_lm        | AutoModelForCausalLM (llama, ChatML)    | text-generation            |
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

# -- the corpus ----------------------------------------------------------------------------------

CORPUS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "I really loved this movie, the acting was wonderful and the story was moving.",
    "This was a terrible experience and I want my money back.",
    "The meeting is scheduled for Tuesday at ten in the morning.",
    "Please summarize the following text in one sentence.",
    "Translate the following sentence into German.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Das Wetter ist heute schön und die Sonne scheint.",
    "Le chat est sur la table et le chien dort dans le jardin.",
    "Je voudrais un café, s'il vous plaît.",
    "Alice Johnson moved from Paris to Berlin in 2019.",
    "Bob Smith works for Acme Corporation in New York.",
    "Maria Garcia visited London, Tokyo and San Francisco last year.",
    "The build failed because a test timed out on the CI server.",
    "Nice refactor, this function is much easier to read now.",
    "This change breaks the public API and has no tests.",
    "The editor opened the file and highlighted the syntax error.",
    "def add(a, b):\n    return a + b\n",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "for i in range(10):\n    print(i)\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "import os\nimport sys\n\nprint(os.getcwd(), sys.argv)\n",
    "function greet(name) {\n  return `Hello, ${name}!`;\n}\n",
    "const items = [1, 2, 3].map((x) => x * 2);\n",
    "if (err != nil) {\n\treturn err\n}\n",
    "fn main() {\n    println!(\"hello world\");\n}\n",
    "SELECT name, email FROM users WHERE id = 42;",
    "# Heading\n\nSome *emphasis* and a [link](https://example.com).\n",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14 -7",
    "Punctuation: ! ? . , ; : ' \" ( ) [ ] { } < > / \\ | @ # $ % ^ & * - + = ~ `",
    "positive negative neutral entailment contradiction",
    "This example is positive. This example is negative. This example is neutral.",
    "The product arrived on time and works as described.",
    "It is okay, nothing special, does what it says.",
)

SEED = 1234

# Characters every sentencepiece-style vocabulary gets even when the corpus lacks them.
ALPHABET = sorted(set(string.printable.strip() + "äöüßÄÖÜéèêàâçôûîïëÉÈÀÇœæñ€£✓→…–—“”‘’"))

# The fill-in-the-middle tokens of each code-model family, as they appear in the real vocabularies.
FIM_TOKENS: dict[str, dict[str, str]] = {
    "starcoder": {"prefix": "<fim_prefix>", "suffix": "<fim_suffix>", "middle": "<fim_middle>",
                  "pad": "<fim_pad>", "eot": "<|endoftext|>"},
    # CodeLlama's vocabulary holds the tokens with the sentencepiece space marker in front.
    "codellama": {"prefix": "▁<PRE>", "suffix": "▁<SUF>", "middle": "▁<MID>", "eot": "▁<EOT>"},
    "deepseek": {"prefix": "<｜fim▁begin｜>", "suffix": "<｜fim▁hole｜>", "middle": "<｜fim▁end｜>",
                 "eot": "<|EOT|>"},
    "qwen": {"prefix": "<|fim_prefix|>", "suffix": "<|fim_suffix|>", "middle": "<|fim_middle|>",
             "pad": "<|fim_pad|>", "eot": "<|endoftext|>"},
}

# Prompt layout of each family (prefix-suffix-middle order), for tests that build FIM prompts by hand.
FIM_FORMATS: dict[str, str] = {
    "starcoder": "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
    "codellama": "▁<PRE> {prefix} ▁<SUF>{suffix} ▁<MID>",
    "deepseek": "<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>",
    "qwen": "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
}

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Small transformer dimensions shared by every builder (hidden sizes multiples of 32).
HIDDEN = 64
FFN = 128
LAYERS = 2
HEADS = 4
CONTEXT = 512


def _round_up(n: int, multiple: int = 32) -> int:
    return (n + multiple - 1) // multiple * multiple


def _corpus(extra: tuple[str, ...] = ()) -> list[str]:
    return list(CORPUS) + list(extra)


# -- tokenizers ----------------------------------------------------------------------------------

_trained: dict[tuple[Any, ...], str] = {}


def _memo(key: tuple[Any, ...], train):
    """Train once per process (see the module docstring); hand out a fresh copy each time."""
    from tokenizers import Tokenizer

    if key not in _trained:
        _trained[key] = train().to_str()
    return Tokenizer.from_str(_trained[key])



def _train_byte_level_bpe(special: list[str], vocab_size: int = 768, extra_text: tuple[str, ...] = ()):
    """GPT-2 / Qwen / DeepSeek style: byte-level BPE (every string encodes, nothing is unknown)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(extra_text), trainer=trainer)
    return tok


def _train_metaspace_bpe(special: list[str], unk: str, vocab_size: int = 768):
    """Llama / CodeLlama style: sentencepiece-like BPE over '▁'-marked words, with byte fallback
    (<0x00> ... <0xFF> in the vocabulary, so no character is unknown) and Llama's decoder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 256, special_tokens=special,
                                  initial_alphabet=ALPHABET, show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    data["model"]["byte_fallback"] = True
    tok = Tokenizer.from_str(json.dumps(data))
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return tok


def _train_unigram(special: list[str], unk: str, vocab_size: int = 512):
    """T5 / Marian style: sentencepiece Unigram over '▁'-marked words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=special, unk_token=unk,
                                      initial_alphabet=ALPHABET, show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok


def _train_wordpiece():
    """BERT style: lower-cased WordPiece with [CLS] ... [SEP] and sentence pairs."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=768, special_tokens=special, show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tok


def _byte_level_bpe(special: list[str], vocab_size: int = 768, extra_text: tuple[str, ...] = ()):
    return _memo(("bytelevel", tuple(special), vocab_size, extra_text),
                 lambda: _train_byte_level_bpe(special, vocab_size, extra_text))


def _metaspace_bpe(special: list[str], unk: str, vocab_size: int = 768):
    return _memo(("metaspace", tuple(special), unk, vocab_size),
                 lambda: _train_metaspace_bpe(special, unk, vocab_size))


def _unigram(special: list[str], unk: str, vocab_size: int = 512):
    return _memo(("unigram", tuple(special), unk, vocab_size), lambda: _train_unigram(special, unk, vocab_size))


def _wordpiece():
    return _memo(("wordpiece",), _train_wordpiece)


def _template(single: str, pair: str, tok, names: list[str]):
    from tokenizers import processors

    return processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(n, tok.token_to_id(n)) for n in names])


def _wrap(tok, folder: Path, *, chat_template: str | None = None, model_max_length: int = CONTEXT,
          **special: Any):
    """Wrap a trained `tokenizers.Tokenizer` as a transformers tokenizer and save it into `folder`."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length, **special)
    # BERT-style pair models need segment ids; TokenizersBackend leaves them out unless told.
    if "[SEP]" in tok.get_vocab():
        fast.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
        fast.init_kwargs["model_input_names"] = fast.model_input_names
    if chat_template is not None:
        fast.chat_template = chat_template
    fast.save_pretrained(folder)
    return fast


def _save(model, folder: Path, generation_config=None) -> None:
    model.save_pretrained(folder)
    if generation_config is not None:
        generation_config.save_pretrained(folder)


def _seed() -> None:
    import torch

    torch.manual_seed(SEED)


def _bert_config(tok, **kw: Any):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=_round_up(tok.get_vocab_size()), hidden_size=HIDDEN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, intermediate_size=FFN, max_position_embeddings=CONTEXT,
        pad_token_id=tok.token_to_id("[PAD]"), **kw)


def _bert_special() -> dict[str, str]:
    return {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
            "mask_token": "[MASK]"}


def _labels(labels: list[str]) -> dict[str, Any]:
    if len(labels) != len(set(labels)) or not labels:
        raise ValueError(f"labels must be distinct and non-empty: {labels}")
    return {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}


# -- builders ------------------------------------------------------------------------------------


def build_seq2seq(folder: str | Path, arch: str = "marian") -> Path:
    """A tiny encoder-decoder for AutoModelForSeq2SeqLM: "marian", "t5" or "bart".

    Token ids follow each family: Marian (eos 0, unk 1, pad 2, decoder starts with pad), T5 (pad 0,
    eos 1, unk 2, decoder starts with pad, "</s>" appended), BART (<s> 0, <pad> 1, </s> 2, <unk> 3,
    <mask> 4, decoder starts with </s>, forced <s> first).
    """
    from transformers import GenerationConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _seed()
    if arch == "marian":
        from transformers import MarianConfig, MarianMTModel

        tok = _unigram(["</s>", "<unk>", "<pad>"], unk="<unk>")
        tok.post_processor = _template("$A </s>", "$A $B </s>", tok, ["</s>"])
        eos, unk, pad = (tok.token_to_id(t) for t in ("</s>", "<unk>", "<pad>"))
        vocab = _round_up(tok.get_vocab_size())
        config = MarianConfig(
            vocab_size=vocab, decoder_vocab_size=vocab, d_model=HIDDEN, encoder_layers=LAYERS,
            decoder_layers=LAYERS, encoder_attention_heads=HEADS, decoder_attention_heads=HEADS,
            encoder_ffn_dim=FFN, decoder_ffn_dim=FFN, max_position_embeddings=CONTEXT,
            pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad, forced_eos_token_id=eos,
            share_encoder_decoder_embeddings=True, scale_embedding=True,
        )
        model = MarianMTModel(config)
        special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
        gen = GenerationConfig(decoder_start_token_id=pad, eos_token_id=eos, pad_token_id=pad,
                               bos_token_id=pad, forced_eos_token_id=eos)
    elif arch == "t5":
        from transformers import T5Config, T5ForConditionalGeneration

        extra = [f"<extra_id_{i}>" for i in range(4)]
        tok = _unigram(["<pad>", "</s>", "<unk>", *extra], unk="<unk>")
        tok.post_processor = _template("$A </s>", "$A </s> $B </s>", tok, ["</s>"])
        pad, eos = tok.token_to_id("<pad>"), tok.token_to_id("</s>")
        config = T5Config(
            vocab_size=_round_up(tok.get_vocab_size()), d_model=HIDDEN, d_kv=HIDDEN // HEADS, d_ff=FFN,
            num_layers=LAYERS, num_decoder_layers=LAYERS, num_heads=HEADS,
            relative_attention_num_buckets=32, pad_token_id=pad, eos_token_id=eos,
            decoder_start_token_id=pad, feed_forward_proj="relu", tie_word_embeddings=True,
        )
        model = T5ForConditionalGeneration(config)
        special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                   "extra_special_tokens": extra}
        gen = GenerationConfig(decoder_start_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    elif arch == "bart":
        from tokenizers import processors
        from transformers import BartConfig, BartForConditionalGeneration

        tok = _byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        bos, pad, eos = (tok.token_to_id(t) for t in ("<s>", "<pad>", "</s>"))
        tok.post_processor = processors.RobertaProcessing(("</s>", eos), ("<s>", bos),
                                                          trim_offsets=True, add_prefix_space=False)
        config = BartConfig(
            vocab_size=_round_up(tok.get_vocab_size()), d_model=HIDDEN, encoder_layers=LAYERS,
            decoder_layers=LAYERS, encoder_attention_heads=HEADS, decoder_attention_heads=HEADS,
            encoder_ffn_dim=FFN, decoder_ffn_dim=FFN, max_position_embeddings=CONTEXT,
            bos_token_id=bos, pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=eos,
            forced_bos_token_id=bos, forced_eos_token_id=eos,
        )
        model = BartForConditionalGeneration(config)
        special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                   "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"}
        gen = GenerationConfig(decoder_start_token_id=eos, bos_token_id=bos, eos_token_id=eos,
                               pad_token_id=pad, forced_bos_token_id=bos, forced_eos_token_id=eos)
    else:
        raise ValueError(f"unknown seq2seq arch {arch!r} (marian, t5, bart)")
    _wrap(tok, folder, **special)
    _save(model, folder, gen)
    return folder


def build_text_classification(folder: str | Path,
                              labels: list[str] | tuple[str, ...] = ("negative", "positive")) -> Path:
    """A tiny BERT sequence classifier with `labels` as its id2label (text-classification pipeline)."""
    from transformers import BertForSequenceClassification

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _seed()
    tok = _wordpiece()
    config = _bert_config(tok, **_labels(list(labels)))
    _wrap(tok, folder, **_bert_special())
    _save(BertForSequenceClassification(config), folder)
    return folder


def build_zero_shot(folder: str | Path) -> Path:
    """A tiny NLI sequence-pair classifier (entailment / neutral / contradiction) for the
    zero-shot-classification pipeline, which looks up the "entailment" label id by name."""
    from transformers import BertForSequenceClassification

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _seed()
    tok = _wordpiece()
    config = _bert_config(tok, **_labels(["contradiction", "neutral", "entailment"]))
    _wrap(tok, folder, **_bert_special())
    _save(BertForSequenceClassification(config), folder)
    return folder


def build_token_classification(
    folder: str | Path,
    labels: list[str] | tuple[str, ...] = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC",
                                           "B-MISC", "I-MISC"),
) -> Path:
    """A tiny BERT token classifier with BIO `labels` (token-classification pipeline, with offsets)."""
    from transformers import BertForTokenClassification

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _seed()
    tok = _wordpiece()
    config = _bert_config(tok, **_labels(list(labels)))
    _wrap(tok, folder, **_bert_special())
    _save(BertForTokenClassification(config), folder)
    return folder


def _causal_model(arch: str, tok, *, bos: int | None, eos: int, pad: int | None,
                  layers: int = LAYERS):
    vocab = _round_up(tok.get_vocab_size())
    if arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=layers,
            num_attention_heads=HEADS, num_key_value_heads=HEADS // 2, max_position_embeddings=CONTEXT,
            bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, tie_word_embeddings=True)
        return LlamaForCausalLM(config)
    if arch == "qwen2":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        config = Qwen2Config(
            vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=layers,
            num_attention_heads=HEADS, num_key_value_heads=HEADS // 2, max_position_embeddings=CONTEXT,
            bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, tie_word_embeddings=True)
        return Qwen2ForCausalLM(config)
    if arch == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(vocab_size=vocab, n_embd=HIDDEN, n_layer=layers, n_head=HEADS,
                            n_positions=CONTEXT, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
        return GPT2LMHeadModel(config)
    raise ValueError(f"unknown causal arch {arch!r} (llama, qwen2, gpt2)")


_FIM_DEFAULT_ARCH = {"starcoder": "gpt2", "codellama": "llama", "deepseek": "llama", "qwen": "qwen2"}


def build_fim_causal_lm(folder: str | Path, style: str = "starcoder", arch: str | None = None) -> Path:
    """A tiny code model whose tokenizer carries `style`'s fill-in-the-middle special tokens.

    style: "starcoder" (<fim_prefix> <fim_suffix> <fim_middle>, GPT-2 byte-level BPE, no BOS),
    "codellama" (▁<PRE> ▁<SUF> ▁<MID> ▁<EOT>, Llama sentencepiece-style BPE, <s> prepended),
    "deepseek" (<｜fim▁begin｜> <｜fim▁hole｜> <｜fim▁end｜>, byte-level BPE, BOS prepended),
    "qwen" (<|fim_prefix|> <|fim_suffix|> <|fim_middle|>, byte-level BPE, no BOS, ChatML template).
    arch: "llama", "qwen2" or "gpt2"; by default the family's own (gpt2, llama, llama, qwen2).
    `FIM_TOKENS[style]` and `FIM_FORMATS[style]` give the tokens and prompt layout.
    """
    from tokenizers import processors
    from transformers import GenerationConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arch = arch or _FIM_DEFAULT_ARCH.get(style, "")
    _seed()
    chat_template = None
    if style == "starcoder":
        names = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>",
                 "<filename>", "<gh_stars>", "<file_sep>", "<repo_name>"]
        tok = _byte_level_bpe(names)
        eos = tok.token_to_id("<|endoftext|>")
        bos, pad = eos, None
        special = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                   "unk_token": "<|endoftext|>", "extra_special_tokens": names[1:]}
    elif style == "codellama":
        fim = ["▁<PRE>", "▁<MID>", "▁<SUF>", "▁<EOT>"]
        tok = _metaspace_bpe(["<unk>", "<s>", "</s>", *fim], unk="<unk>")
        tok.post_processor = _template("<s> $A", "<s> $A <s> $B", tok, ["<s>"])
        bos, eos, pad = tok.token_to_id("<s>"), tok.token_to_id("</s>"), None
        special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                   "extra_special_tokens": fim}
    elif style == "deepseek":
        bos_t, eos_t = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
        fim = ["<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>"]
        tok = _byte_level_bpe([bos_t, eos_t, *fim, "<|EOT|>"])
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            _template(f"{bos_t} $A", f"{bos_t} $A {bos_t} $B", tok, [bos_t]),
        ])
        bos, eos = tok.token_to_id(bos_t), tok.token_to_id(eos_t)
        pad = eos
        special = {"bos_token": bos_t, "eos_token": eos_t, "pad_token": eos_t,
                   "extra_special_tokens": [*fim, "<|EOT|>"]}
    elif style == "qwen":
        names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>",
                 "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
        tok = _byte_level_bpe(names)
        eos = tok.token_to_id("<|endoftext|>")
        bos, pad = None, eos
        special = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                   "extra_special_tokens": names[1:]}
        chat_template = CHATML_TEMPLATE
    else:
        raise ValueError(f"unknown FIM style {style!r} ({', '.join(FIM_TOKENS)})")
    model = _causal_model(arch, tok, bos=bos, eos=eos, pad=pad)
    gen = GenerationConfig(bos_token_id=bos, eos_token_id=eos,
                           pad_token_id=pad if pad is not None else eos)
    _wrap(tok, folder, chat_template=chat_template, **special)
    _save(model, folder, gen)
    (folder / "ember-fim.json").write_text(json.dumps(
        {"style": style, "tokens": FIM_TOKENS[style], "format": FIM_FORMATS[style]}, ensure_ascii=False))
    return folder


def build_chat_causal_lm(folder: str | Path, layers: int = 4) -> Path:
    """A tiny instruct-style Llama with SmolLM2's special tokens and ChatML chat template
    (<|endoftext|> 0, <|im_start|> 1, <|im_end|> 2; <|im_end|> ends a turn and is the pad).

    With the default 4 layers its weights take about 0.75 MiB in float32: one fits a 1 MiB memory
    budget, two do not.
    """
    from transformers import GenerationConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _seed()
    tok = _byte_level_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    bos, eos = tok.token_to_id("<|im_start|>"), tok.token_to_id("<|im_end|>")
    model = _causal_model("llama", tok, bos=bos, eos=eos, pad=eos, layers=layers)
    gen = GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
    _wrap(tok, folder, chat_template=CHATML_TEMPLATE, bos_token="<|im_start|>", eos_token="<|im_end|>",
          pad_token="<|im_end|>", unk_token="<|endoftext|>")
    _save(model, folder, gen)
    return folder


BUILDERS = {
    "seq2seq": build_seq2seq,
    "text-classification": build_text_classification,
    "zero-shot-classification": build_zero_shot,
    "token-classification": build_token_classification,
    "fim-causal-lm": build_fim_causal_lm,
    "chat-causal-lm": build_chat_causal_lm,
}


# The words the tiny question-answering model answers with, strongest first (single WordPiece tokens).
QA_START_WORDS = ("alice", "maria")
QA_END_WORDS = ("johnson", "garcia")


def build_question_answering(folder: str | Path, start_words: tuple[str, ...] = QA_START_WORDS,
                             end_words: tuple[str, ...] = QA_END_WORDS) -> Path:
    """A tiny BERT extractive QA model (AutoModelForQuestionAnswering) whose answers are set by its
    weights, not trained: every attention and feed-forward output is zero and position and segment
    embeddings are zero, so a token's final state is its own normalized word embedding. The span head
    reads two directions of it: `start_words[0]` gets a start logit of about 16, `start_words[1]`
    about 9-13 (likewise `end_words` for the end), every other token 0. So in "... Alice Johnson ... Maria
    Garcia ..." the best span is "Alice Johnson" wherever it is, and "Maria Garcia" without it; the
    question does not matter (which the tests use to check that question tokens are never answered).
    """
    import torch
    from transformers import BertForQuestionAnswering

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _seed()
    tok = _wordpiece()
    config = _bert_config(tok, num_labels=2)
    model = BertForQuestionAnswering(config)
    with torch.no_grad():
        for name, param in model.bert.encoder.named_parameters():
            if name.endswith(("attention.output.dense.weight", "attention.output.dense.bias",
                              "output.dense.weight", "output.dense.bias")):
                param.zero_()
        emb = model.bert.embeddings
        emb.position_embeddings.weight.zero_()
        emb.token_type_embeddings.weight.zero_()
        g = torch.Generator().manual_seed(SEED)
        basis, _ = torch.linalg.qr(torch.randn(HIDDEN, HIDDEN, generator=g))
        ones = torch.ones(HIDDEN) / HIDDEN ** 0.5
        # Two zero-mean orthonormal directions: start (u) and end (w).
        u = basis[:, 0] - (basis[:, 0] @ ones) * ones
        u = u / u.norm()
        w = basis[:, 1] - (basis[:, 1] @ ones) * ones - (basis[:, 1] @ u) * u
        w = w / w.norm()
        words = torch.randn(emb.word_embeddings.weight.shape, generator=g)
        words -= torch.outer(words @ u, u) + torch.outer(words @ w, w)
        words -= words.mean(dim=1, keepdim=True)
        for direction, chosen in ((u, start_words), (w, end_words)):
            for strength, word in zip((8.0, 4.0), chosen, strict=False):
                token = tok.token_to_id(word)
                if token is None:
                    raise ValueError(f"{word!r} is not one token of the tiny vocabulary")
                words[token] += strength * direction
        emb.word_embeddings.weight.copy_(words)
        model.qa_outputs.weight.copy_(3.0 * torch.stack([u, w]))
        model.qa_outputs.bias.zero_()
    _wrap(tok, folder, **_bert_special())
    _save(model, folder)
    return folder


BUILDERS["question-answering"] = build_question_answering
