"""Tiny real transformers models (BERT, GPT-2, BART) with tokenizers trained on given texts,
built in about a second: what the kit's fixtures and the conformance run train."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEFAULT_TEXTS = (
    "a gripping , funny and moving film",
    "the plot is dull and the acting is worse",
    "one of the best movies of the year",
    "a tedious , boring mess",
    "charming performances and a clever script",
    "it never finds its footing",
)


TINY_BERT_SHAPE: dict[str, int] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
}


def make_tiny_bert(
    folder: str | Path,
    texts: Iterable[str] = DEFAULT_TEXTS,
    seed: int = 0,
    dropout: float = 0.1,
    *,
    shape: dict[str, int] | None = None,
    vocab_size: int = 2000,
) -> Path:
    """Save a tiny random BERT (2 layers, hidden 32) and a WordPiece tokenizer trained on
    ``texts`` to ``folder``; loadable with the Auto* classes. Takes about a second.

    ``dropout=0`` makes training deterministic across process counts (for equivalence tests).
    ``shape`` replaces the tiny sizes (``BertConfig`` arguments; ``{}``: bert-base's own, as
    the GPU check builds it), ``vocab_size`` is the tokenizer's target vocabulary.
    """
    shape = TINY_BERT_SHAPE if shape is None else shape
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        list(texts), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=shape.get("max_position_embeddings", 512),
        # BERT's inputs: without token_type_ids the two texts of a pair look like one.
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    sizes: dict[str, Any] = {"vocab_size": tok.get_vocab_size(), **shape}
    config = BertConfig(
        **sizes,
        pad_token_id=tok.token_to_id("[PAD]"),
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def make_tiny_gpt2(
    folder: str | Path, texts: Iterable[str] = DEFAULT_TEXTS, seed: int = 0, dropout: float = 0.1
) -> Path:
    """Save a tiny random GPT-2 (2 layers, hidden 32) and a byte-level BPE tokenizer trained
    on ``texts`` to ``folder``; loadable with ``AutoModelForCausalLM``. About a second.

    ``<|endoftext|>`` is BOS, EOS and padding, as in GPT-2.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    eos = "<|endoftext|>"
    tok = _byte_level_bpe(texts, [eos])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=eos, eos_token=eos, unk_token=eos, pad_token=eos
    )
    tokenizer.model_max_length = 128
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=tok.get_vocab_size(),
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.token_to_id(eos),
        eos_token_id=tok.token_to_id(eos),
        pad_token_id=tok.token_to_id(eos),
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def make_tiny_bart(
    folder: str | Path, texts: Iterable[str] = DEFAULT_TEXTS, seed: int = 0, dropout: float = 0.1
) -> Path:
    """Save a tiny random BART (encoder-decoder, 2 + 2 layers, hidden 32) and a byte-level
    BPE tokenizer trained on ``texts`` (give it both languages' text) to ``folder``; loadable
    with ``AutoModelForSeq2SeqLM``. About a second.

    Every encoded text is ``<s> ... </s>``, as BART's tokenizer writes it.
    """
    import torch
    from tokenizers.processors import TemplateProcessing
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = _byte_level_bpe(texts, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], unk="<unk>")
    tok.post_processor = TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=128,
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = BartConfig(
        vocab_size=tok.get_vocab_size(),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
        dropout=dropout,
        attention_dropout=dropout,
        activation_dropout=dropout,
    )
    BartForConditionalGeneration(config).save_pretrained(folder)
    return folder


def _byte_level_bpe(texts: Iterable[str], specials: list[str], unk: str | None = None) -> Any:
    """A byte-level BPE tokenizer (1,000 tokens, GPT-2 style) trained on ``texts``; the
    special tokens take the first ids, in order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        list(texts),
        trainers.BpeTrainer(
            vocab_size=1000,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    return tok
