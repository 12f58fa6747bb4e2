"""Tokenizers built here (CLIP BPE files we write, a T5-style word tokenizer in memory), so pipelines load without a download."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.normalizers import Lowercase
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing
from transformers import CLIPTokenizer, PreTrainedTokenizerFast


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for bytes that byte-level BPE tokenizers (GPT-2, CLIP) use."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def write_clip_tokenizer(directory: str | Path, words: Iterable[str] = ()) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` of a CLIP BPE tokenizer into ``directory``.

    The vocabulary holds every byte (alone and word-final) and, for each of ``words``, merges
    that build it into a single token, so a caption of known words costs one token a word.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_alphabet()
    vocab = alphabet + [c + "</w>" for c in alphabet]
    merges: dict[tuple[str, str], int] = {}
    words = list(dict.fromkeys(w.lower() for w in words))
    while unfinished := [w for w in words if len(_bpe(w, merges)) > 1]:
        # A rule appended last never pre-empts an earlier one, so words already whole stay whole.
        for word in unfinished:
            symbols = _bpe(word, merges)
            if len(symbols) > 1:
                merges[(symbols[0], symbols[1])] = len(merges)
                vocab.append(symbols[0] + symbols[1])
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(dict.fromkeys(vocab))}), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return directory


def _bpe(word: str, merges: dict[tuple[str, str], int]) -> list[str]:
    """``word`` split as byte-level BPE with ``merges`` (pair -> rank) splits it: lowest-ranked pair first."""
    symbols = [*word[:-1], word[-1] + "</w>"]
    while len(symbols) > 1:
        pair = min(itertools.pairwise(symbols), key=lambda p: merges.get(p, len(merges)))
        if pair not in merges:
            break
        i, merged = 0, []
        while i < len(symbols):
            if tuple(symbols[i : i + 2]) == pair:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def clip_tokenizer(directory: str | Path, words: Iterable[str] = (), max_length: int = 77) -> CLIPTokenizer:
    """Write the vocabulary files into ``directory`` and load a ``CLIPTokenizer`` from them."""
    path = write_clip_tokenizer(directory, words)
    return CLIPTokenizer.from_pretrained(str(path), model_max_length=max_length)


def word_tokenizer(words: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """A T5-style word tokenizer (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, then ``words``), built in memory.

    It stands in for T5's SentencePiece files in the tiny PixArt-Σ pipeline: lower-cased words
    split on whitespace and punctuation, ``</s>`` appended, unknown words as ``<unk>``.
    """
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in words:
        vocab.setdefault(word.lower(), len(vocab))
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = Lowercase()
    backend.pre_tokenizer = Whitespace()
    backend.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
