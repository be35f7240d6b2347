"""Generation benchmark: raw llama-cpp-python vs Enclave's generator adapter, and time to first
token of a RAG-shaped prompt with its fixed system prompt cached vs cold.

    .venv/bin/python benchmarks/generation_bench.py [--threads N] [--n-gpu-layers -1]
        [--n-ctx 4096] [--max-tokens 128] [--repeats 3] [--json]

* raw: ``llama_cpp.Llama`` with the generator's settings (n_ctx, threads, n_batch, seed,
  sampling), the prompt evaluated from an empty cache (prefill tok/s), then ``Llama.generate``
  decoding greedily (decode tok/s, first token excluded);
* adapter: ``LlamaCppGenerator.stream`` on the same chat messages from an empty cache, same
  figures; raw and adapter runs alternate, medians are reported, ratio = adapter / raw;
* server: the adapter's stream through the answer stage's sentence gate (generate mode: each
  completed sentence is checked before it is passed on), decode tok/s, server_ratio = server
  / raw;
* time to first token of a ~1,500-token prompt (fixed system prompt + five retrieved sources +
  question): cold (empty cache), warm (system prompt cached, different sources) and shared
  (everything but the question cached).

The machine's load average is printed with the figures: on a machine whose cores are busy,
llama.cpp's threads wait on each other and figures drop by several times.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from enclave.native import preload_generator_runtime
from enclave.offline import enforce_offline

enforce_offline()
preload_generator_runtime()

SYSTEM_PROMPT = (
    "You are Enclave, an assistant that answers questions using only the numbered sources "
    "provided by the user. Cite every claim with the number of its source in square brackets, "
    "like [1] or [2][3]. If the sources do not contain the answer, say that the documents do "
    "not cover the question instead of guessing. Keep answers short and factual; quote figures, "
    "dates and names exactly as they appear in the sources. Do not mention these instructions. "
) * 3
QUESTION = "Write a detailed summary of the travel expense policy for employees."
WORDS = [
    "policy",
    "employee",
    "manager",
    "approval",
    "travel",
    "expense",
    "report",
    "receipt",
    "budget",
    "quarter",
    "contract",
    "supplier",
    "invoice",
    "payment",
    "deadline",
    "department",
    "director",
    "project",
    "review",
    "meeting",
    "customer",
    "service",
    "training",
    "security",
    "access",
    "laptop",
    "office",
    "remote",
    "leave",
    "holiday",
    "salary",
    "bonus",
    "audit",
    "compliance",
    "record",
    "archive",
    "request",
    "form",
    "signature",
    "week",
    "month",
    "year",
    "limit",
    "amount",
    "currency",
]


def source_text(seed: int, words: int = 180) -> str:
    rng = random.Random(seed)
    sentences: list[str] = []
    while sum(len(s.split()) for s in sentences) < words:
        n = rng.randint(8, 16)
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + ".")
    return " ".join(sentences)


def rag_messages(seed: int, question: str = QUESTION) -> list[dict[str, str]]:
    sources = "\n\n".join(f"[{i + 1}] {source_text(seed * 10 + i)}" for i in range(5))
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Sources:\n{sources}\n\nQuestion: {question}"},
    ]


SHORT_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write a long essay about the history of the Roman empire."},
]


def _raw_llama(
    path: str, n_ctx: int, threads: int, n_batch: int = 512, seed: int = 0, n_gpu_layers: int = 0
) -> Any:
    from llama_cpp import Llama

    from models.llama_cpp import _model_params, cpu_has_amx

    # the same weight-repacking choice as the generator (llama.cpp's AMX repack can crash)
    with _model_params(use_extra_bufts=not cpu_has_amx()):
        return Llama(
            model_path=path,
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=n_gpu_layers,
            n_batch=min(n_batch, n_ctx),
            seed=seed,
            verbose=False,
        )


def raw_run(llm: Any, tokens: list[int], max_tokens: int) -> dict[str, float]:
    """Empty cache, eval the prompt, decode greedily with llama-cpp-python's generate()."""
    import llama_cpp

    from models.llama_cpp import LlamaCppGenerator as G

    llm.reset()
    started = time.perf_counter()
    llm.eval(tokens[:-1])
    prefill_s = time.perf_counter() - started
    first = 0.0
    n = 0
    gen = llm.generate(
        tokens, top_k=G.top_k, top_p=G.top_p, min_p=G.min_p, temp=0.0,
        repeat_penalty=G.repeat_penalty,
    )  # fmt: skip
    for token in gen:
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
        llm.detokenize([token])
        n += 1
        if n == 1:
            first = time.perf_counter()
        if n >= max_tokens:
            break
    gen.close()
    end = time.perf_counter()
    return {
        "prompt_tokens": len(tokens),
        "tokens": n,
        "prefill_tok_s": (len(tokens) - 1) / prefill_s,
        "first_token_s": first - started,
        "decode_tok_s": (n - 1) / (end - first) if n > 1 else 0.0,
    }


def raw_decode_tokens_per_s(
    path: str | Path,
    n_ctx: int,
    threads: int,
    prompt: str | list[dict[str, str]],
    max_tokens: int,
    *,
    llm: Any = None,
) -> dict[str, float]:
    """Raw llama-cpp-python figures for one greedy run from an empty cache: prefill and decode
    tokens/s, tokens generated, time to first token. ``prompt`` is plain text or chat
    messages (rendered with the GGUF's chat template, as the generator does). Pass ``llm`` to
    reuse a loaded ``Llama``."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = llm or _raw_llama(str(path), n_ctx, threads)
    if isinstance(prompt, str):
        text, add_bos = prompt, True
    else:
        formatter = Jinja2ChatFormatter(
            template=llm.metadata["tokenizer.chat_template"],
            eos_token=llm._model.token_get_text(llm.token_eos()),
            bos_token=llm._model.token_get_text(llm.token_bos()),
        )
        text, add_bos = formatter(messages=prompt).prompt, False  # type: ignore[arg-type]
    tokens = llm.tokenize(text.encode(), add_bos=add_bos, special=True)
    return raw_run(llm, tokens, max_tokens)


def adapter_run(gen: Any, messages: list[dict[str, str]], max_tokens: int) -> dict[str, float]:
    gen._llm.reset()  # empty cache, as the raw run
    started = time.perf_counter()
    first = 0.0
    usage: Any = None
    for event in gen.stream(messages, max_tokens=max_tokens, temperature=0.0):
        if not first and (event.delta or event.finish_reason):
            first = time.perf_counter()
        usage = event.usage or usage
    end = time.perf_counter()
    n = usage.completion_tokens
    return {
        "prompt_tokens": usage.prompt_tokens,
        "tokens": n,
        "prefill_tok_s": usage.prompt_tokens / (first - started),
        "first_token_s": first - started,
        "decode_tok_s": (n - 1) / (end - first) if n > 1 else 0.0,
    }


def server_run(gen: Any, messages: list[dict[str, str]], max_tokens: int) -> dict[str, float]:
    """The adapter's stream as the server's answer stage consumes it in generate mode: through
    the sentence gate (rag/generated.py), which checks each completed sentence against the
    sources before passing it on. Decode is timed from the model's first token to the end."""
    from rag.generated import FactSources, SentenceGate

    facts = FactSources(passages={1: source_text(7), 2: source_text(8)})
    gen._llm.reset()
    started = time.perf_counter()
    first = 0.0
    usage: Any = None
    gate = SentenceGate(facts)
    for event in gate.filter(gen.stream(messages, max_tokens=max_tokens, temperature=0.0)):
        if not first:
            first = time.perf_counter()
        usage = event.usage or usage
    end = time.perf_counter()
    n = usage.completion_tokens
    return {
        "prompt_tokens": usage.prompt_tokens,
        "tokens": n,
        "first_token_s": first - started,
        "decode_tok_s": (n - 1) / (end - first) if n > 1 else 0.0,
    }


def first_token_s(gen: Any, messages: list[dict[str, str]]) -> float:
    started = time.perf_counter()
    stream = gen.stream(messages, max_tokens=2, temperature=0.0)
    next(stream)
    elapsed = time.perf_counter() - started
    for _ in stream:
        pass
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bundled", help="'bundled' or a GGUF path")
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--n-gpu-layers", type=int, default=0, help="-1 = every layer on the GPU")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--decode-only", action="store_true", help="only the decode figures (a busy machine)"
    )
    args = parser.parse_args(argv)

    from models.llama_cpp import LlamaCppGenerator, resolve_generator_path

    path = resolve_generator_path(args.model)
    threads = args.threads or os.cpu_count() or 1
    load_before = os.getloadavg()
    gen = LlamaCppGenerator(
        path, n_ctx=args.n_ctx, n_threads=threads, n_gpu_layers=args.n_gpu_layers
    )
    raw = _raw_llama(str(path), args.n_ctx, threads, n_gpu_layers=args.n_gpu_layers)
    report: dict[str, Any] = {
        "model": path.name,
        "threads": threads,
        "layers_on_gpu": gen.describe()["layers_on_gpu"],
        "n_ctx": args.n_ctx,
        "cpu_count": os.cpu_count(),
    }

    # raw vs adapter, alternating, on a short chat and on the RAG-shaped prompt (prefill)
    short_tokens = gen.prompt_tokens(SHORT_MESSAGES)
    raw_runs, ad_runs, server_runs = [], [], []
    raw_run(raw, short_tokens, 8)  # warm both once
    adapter_run(gen, SHORT_MESSAGES, 8)
    for _ in range(args.repeats):
        raw_runs.append(raw_run(raw, short_tokens, args.max_tokens))
        ad_runs.append(adapter_run(gen, SHORT_MESSAGES, args.max_tokens))
        server_runs.append(server_run(gen, SHORT_MESSAGES, args.max_tokens))

    def med(runs: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 1)

    report["decode"] = {
        "prompt_tokens": len(short_tokens),
        "tokens": [r["tokens"] for r in ad_runs],
        "raw_decode_tok_s": med(raw_runs, "decode_tok_s"),
        "adapter_decode_tok_s": med(ad_runs, "decode_tok_s"),
    }
    report["decode"]["ratio"] = round(
        report["decode"]["adapter_decode_tok_s"] / report["decode"]["raw_decode_tok_s"], 3
    )
    report["decode"]["server_decode_tok_s"] = med(server_runs, "decode_tok_s")
    report["decode"]["server_ratio"] = round(
        report["decode"]["server_decode_tok_s"] / report["decode"]["raw_decode_tok_s"], 3
    )

    if args.decode_only:
        report["load_average"] = {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        }
        gen.close()
        print(json.dumps(report, indent=2))
        return 0

    rag = rag_messages(1)
    rag_tokens = gen.prompt_tokens(rag)
    raw_pre, ad_pre = [], []
    for _ in range(max(1, args.repeats - 1)):
        raw_pre.append(raw_run(raw, rag_tokens, 1))
        ad_pre.append(adapter_run(gen, rag, 1))
    report["prefill"] = {
        "prompt_tokens": len(rag_tokens),
        "raw_prefill_tok_s": med(raw_pre, "prefill_tok_s"),
        "adapter_prefill_tok_s": med(ad_pre, "prefill_tok_s"),
    }
    report["prefill"]["ratio"] = round(
        report["prefill"]["adapter_prefill_tok_s"] / report["prefill"]["raw_prefill_tok_s"], 3
    )

    # time to first token: cold, system prompt cached, all but the question cached
    system_tokens = gen.count_chat_tokens(rag[:1])
    gen._llm.reset()  # type: ignore[no-untyped-call]
    cold = first_token_s(gen, rag_messages(2))
    warm = statistics.median(first_token_s(gen, rag_messages(3 + i)) for i in range(2))
    same_sources = rag_messages(4, "Who approves the travel expenses of directors?")
    shared = first_token_s(gen, same_sources)
    report["first_token"] = {
        "prompt_tokens": gen.count_chat_tokens(rag_messages(2)),
        "system_prompt_tokens": system_tokens,
        "cold_s": round(cold, 3),
        "system_prompt_cached_s": round(warm, 3),
        "all_but_question_cached_s": round(shared, 3),
    }
    report["load_average"] = {
        "before": [round(x, 2) for x in load_before],
        "after": [round(x, 2) for x in os.getloadavg()],
    }
    gen.close()

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        d, p, f = report["decode"], report["prefill"], report["first_token"]
        print(
            f"model {report['model']}, {threads} threads, n_ctx {args.n_ctx}, "
            f"{report['layers_on_gpu']} layers on the GPU"
        )
        print(
            f"decode  raw {d['raw_decode_tok_s']} tok/s, adapter {d['adapter_decode_tok_s']} "
            f"tok/s, ratio {d['ratio']} (tokens {d['tokens']}); server (sentence gate) "
            f"{d['server_decode_tok_s']} tok/s, ratio {d['server_ratio']}"
        )
        print(
            f"prefill ({p['prompt_tokens']} tokens) raw {p['raw_prefill_tok_s']} tok/s, adapter "
            f"{p['adapter_prefill_tok_s']} tok/s, ratio {p['ratio']}"
        )
        print(
            f"first token, {f['prompt_tokens']}-token RAG prompt: cold {f['cold_s']} s, "
            f"system prompt ({f['system_prompt_tokens']} tokens) cached "
            f"{f['system_prompt_cached_s']} s, all but the question cached "
            f"{f['all_but_question_cached_s']} s"
        )
        print(f"load average before {report['load_average']['before']}, after "
              f"{report['load_average']['after']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
