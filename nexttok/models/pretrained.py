"""Pretrained causal LMs from Hugging Face `transformers` (GPT-2, Pythia), finetuned on the task.

The paper finetunes GPT-2 and Pythia on the graphs written as text, read by each model's own tokenizer.
Here every nexttok token (node labels 0..N-1 and the symbols | = / $) is written as the text the
tokenizer reads as ONE token: " 12", " |", ... (or "12" where the spaced form takes two). A sequence of
nexttok tokens is then the text `" " + vocab.decode(tokens)`, read by the tokenizer token for token
(the authors' commas are dropped, as everywhere in nexttok).

`PretrainedLM` keeps the interface of nexttok's own models, in nexttok's ids:
- `forward(idx, n_out)` returns the logits of the whole pretrained vocabulary, reordered so that columns
  0..vocab.size-1 are the task tokens and the rest follow. nexttok's cross-entropy over these columns is
  the full-vocabulary loss, and a prediction of any other token counts as wrong;
- `generate(prefix, n)` decodes greedily with the model's KV cache (`past_key_values`).
The loss covers the target positions only and the teacherless "$" inputs are the " $" token: both come
from nexttok's objectives unchanged.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn

from ..graphs import TaskError
from ..tokens import Vocab
from .gpt import pick

# short name -> hub id; --weights DIR loads a local copy instead
PRETRAINED = {
    "gpt2": "openai-community/gpt2", "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large", "gpt2-xl": "openai-community/gpt2-xl",
    **{f"pythia-{size}{dedup}": f"EleutherAI/pythia-{size}{dedup}"
       for size in ("70m", "160m", "410m", "1b") for dedup in ("", "-deduped")},
}
# the model_type in a checkpoint's config.json, per family of short names
FAMILIES = {"gpt2": "gpt2", "pythia": "gpt_neox"}


def family(model: str) -> str:
    return FAMILIES[model.split("-")[0]]


class PretrainedLM(nn.Module):
    def __init__(self, lm: nn.Module, token_ids: list[int]):
        super().__init__()
        self.lm = lm
        n_logits = lm.get_output_embeddings().weight.shape[0]  # may exceed the tokenizer (Pythia pads it)
        rest = torch.ones(n_logits, dtype=torch.bool)
        rest[token_ids] = False
        # perm[i]: the pretrained id of nexttok id i; nexttok ids >= vocab.size are the other tokens, in order.
        # Not saved in checkpoints: it follows from the tokenizer.
        perm = torch.cat([torch.tensor(token_ids), torch.arange(n_logits)[rest]])
        self.register_buffer("perm", perm, persistent=False)

    def forward(self, idx, n_out: int | None = None):
        """Logits (B, n_out, V) for the last n_out positions (all when None), columns in nexttok order."""
        out = self.lm(input_ids=self.perm[idx], logits_to_keep=n_out or 0, use_cache=False)
        return out.logits[..., self.perm]

    @torch.no_grad()
    def generate(self, prefix, n_new: int, temperature: float = 0.0, generator: torch.Generator | None = None):
        """n_new tokens after prefix (B, T) in nexttok ids: the prefix fills the cache once, then one token a step."""
        out = self.lm(input_ids=self.perm[prefix], use_cache=True, logits_to_keep=1)
        tokens = []
        for i in range(n_new):
            tokens.append(pick(out.logits[:, -1, self.perm], temperature, generator))
            if i + 1 < n_new:
                out = self.lm(input_ids=self.perm[tokens[-1]][:, None], past_key_values=out.past_key_values,
                              use_cache=True, logits_to_keep=1)
        return torch.stack(tokens, dim=1)


def task_token_ids(tokenizer, vocab: Vocab) -> list[int]:
    """The pretrained id of each nexttok token: the text the tokenizer reads as one token, spaced first."""
    texts = [vocab.decode([i]) for i in range(vocab.size)]
    ids = []
    for text in texts:
        for form in (" " + text, text):
            encoded = tokenizer.encode(form, add_special_tokens=False)
            # decoding back guards against a tokenizer that maps an unknown word to its one <unk> token
            if len(encoded) == 1 and tokenizer.decode(encoded).strip() == text:
                ids.append(encoded[0])
                break
        else:
            raise TaskError(f"the tokenizer cannot write {text!r} as one token: use fewer --num-nodes")
    return ids


def _hub_reachable(timeout: float = 5.0) -> bool:
    """A quick look for the hub: without one, huggingface_hub would retry for about a minute."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _quiet(keep_bars: bool = False):
    """transformers' load reports and per-file progress bars, off (a download's bars stay)."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    if not keep_bars:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _from_pretrained(source: str, local_only: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet(keep_bars=not local_only):
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        # float32 weights: AdamW updates them; autocast gives bf16/fp16 compute on a GPU
        lm = AutoModelForCausalLM.from_pretrained(source, local_files_only=local_only, dtype=torch.float32)
    return tokenizer, lm


def load_pretrained(model: str, weights: str | None, vocab: Vocab, block_size: int) -> PretrainedLM:
    """The pretrained model `model` names, from the folder `weights` (save_pretrained's layout) or,
    without one, from the hub (its local cache first; downloads only when the hub answers)."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise TaskError(f"--model {model} needs Hugging Face transformers: pip install 'nexttok[pretrained]'") from None
    if weights is not None:
        if not (Path(weights) / "config.json").is_file():
            raise TaskError(f"--weights {weights}: not a model folder (no config.json); "
                            "pass a folder written by save_pretrained")
        try:
            tokenizer, lm = _from_pretrained(weights, local_only=True)
        except Exception as err:  # noqa: BLE001 - a damaged or foreign weights file: transformers, torch and
            # safetensors raise many kinds (a pickle refused by weights_only, a truncated header, ...)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TaskError(f"--weights {weights}: cannot load a model and its tokenizer ({type(err).__name__}: "
                            f"{first[:200]})") from None
    else:
        hub_id = PRETRAINED[model]
        try:
            tokenizer, lm = _from_pretrained(hub_id, local_only=True)  # the hub's local cache
        except OSError:
            offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
            if offline or not _hub_reachable():
                raise TaskError(f"--model {model}: {hub_id} is not in the local Hugging Face cache and the hub "
                                "cannot be reached; pass --weights DIR, a folder written by save_pretrained") from None
            tokenizer, lm = _from_pretrained(hub_id, local_only=False)
    where = weights or PRETRAINED[model]
    if lm.config.model_type != family(model):
        raise TaskError(f"{where} holds a {lm.config.model_type} model, not a {model} ({family(model)})")
    if block_size > lm.config.max_position_embeddings:
        raise TaskError(f"{where} reads at most {lm.config.max_position_embeddings} tokens; the task needs {block_size}")
    return PretrainedLM(lm, task_token_ids(tokenizer, vocab))


def save_tiny(folder: str | Path, model: str = "gpt2", layers: int = 2, width: int = 64, heads: int = 4,
              num_labels: int = 100, seed: int = 0) -> Path:
    """A tiny randomly initialised model of `model`'s family and a word-level tokenizer, saved as
    save_pretrained does: what the tests and the chapter's CPU scale load with --weights. No download;
    the same arguments write the same weights."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    # a vocabulary with more than the task's tokens, in a scrambled order, as a real one has
    g = torch.Generator().manual_seed(seed)
    words = ["<unk>", "<eos>", "the", "a", "of", "path", "graph", ",", "|", "=", "/", "$"] + [str(i) for i in range(num_labels)]
    order = torch.randperm(len(words), generator=g).tolist()
    word_level = Tokenizer(models.WordLevel({w: order[i] for i, w in enumerate(words)}, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="<unk>", eos_token="<eos>")
    eos = tokenizer.convert_tokens_to_ids("<eos>")
    size = dict(vocab_size=len(words), bos_token_id=eos, eos_token_id=eos)
    if family(model) == "gpt2":
        # no dropout (GPT-2 has 0.1, Pythia none): short runs on fresh graphs have nothing to overfit
        config = GPT2Config(n_layer=layers, n_embd=width, n_head=heads, n_positions=256, resid_pdrop=0.0, embd_pdrop=0.0,
                            attn_pdrop=0.0, **size)
        cls = GPT2LMHeadModel
    else:
        config = GPTNeoXConfig(num_hidden_layers=layers, hidden_size=width, num_attention_heads=heads, intermediate_size=4 * width,
                               max_position_embeddings=256, **size)
        cls = GPTNeoXForCausalLM
    folder = Path(folder)
    with torch.random.fork_rng(), _quiet():  # seeded weights, and the caller's random state left as it was
        torch.manual_seed(seed)
        cls(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
