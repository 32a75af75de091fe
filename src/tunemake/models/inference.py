"""Running a transformers model: loading it for answers, batched generation (greedy or nucleus sampling), and
teacher-forced scoring of given answers (losses and log-probabilities, sharing a prompt's prefix)."""

from __future__ import annotations

from pathlib import Path


def hf_answers(model, tokenizer, prompts: list[str], generate: dict, batch_size: int, seed: int | None = None):
    """Each rendered prompt's answer (greedy, or sampled when `generate` samples), generated in batches of similar
    length (little padding), and whether the model ended its turn (generated one of its stop tokens) before the
    token limit. A sampled answer draws from a generator of its own, seeded with seed + the prompt's index.

    Guaranteed on every CPU: the same prompts, batch size and seed give the same answers, and another seed gives
    other answers. Not guaranteed: the same answers in batches of another size. A prompt's draws never depend on
    the other prompts of its batch, but its probabilities do, by rounding: padding changes the matrix shapes, and
    with them the kernels' summation order. In float32 that moves an answer only where a draw falls at a near tie
    (rare for a trained model, seen on a tiny random one); in bfloat16 it moves most sampled answers."""
    import torch

    samplers = [p for p in generate.get("logits_processor") or [] if isinstance(p, Nucleus)]
    answers, stopped = [""] * len(prompts), [True] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        encoded = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = encoded.to(model.device)
        for sampler in samplers:
            sampler.generators = [torch.Generator().manual_seed((seed or 0) + i) for i in chunk]
        output = model.generate(**encoded, **generate)
        for i, sequence in zip(chunk, output[:, encoded["input_ids"].shape[1] :]):
            answers[i] = tokenizer.decode(sequence, skip_special_tokens=True).strip()
            stopped[i] = any(token in generate["eos_token_id"] for token in sequence.tolist())
    return answers, stopped


class Nucleus:
    """Sampling with temperature, then top-p as transformers' TopPLogitsWarper keeps it (the likeliest tokens until
    their mass reaches top_p, the likeliest always), as a logits processor under greedy decoding: it draws the token
    and leaves only it standing. transformers' own sampling sorts the whole vocabulary and draws from all of it at
    every step (docs/benchmarks/replay.md); here the nucleus is looked for among the `among` likeliest tokens, and the draw is made
    there. Only a row whose nucleus is wider gets the full sort. Each row draws from its own generator
    (`generators`, set per batch by hf_answers; torch's global one when unset), so a row's draws do not depend on
    the other rows of its batch."""

    def __init__(self, temperature: float, top_p: float, among: int = 256):
        self.temperature, self.top_p, self.among = temperature, top_p, among
        self.generators: list | None = None

    def nucleus(self, scores) -> list[tuple]:
        """Each row's weights over its candidate tokens (0 outside the nucleus) and the candidates' ids."""
        probs = (scores.float() / self.temperature).softmax(-1)
        tops, indices = probs.topk(min(self.among, probs.shape[-1]), dim=-1)
        wide = (tops.sum(-1) < self.top_p).tolist()  # one read of the device for the batch, not one per row
        rows = []
        for row, top, index, too_wide in zip(probs, tops, indices, wide):
            if too_wide:  # wider than `among`: this row alone gets the full sort
                top, index = row.sort(descending=True)
            rows.append((top.masked_fill(top.cumsum(-1) - top >= self.top_p, 0), index))  # mass before: 0
        return rows

    def __call__(self, input_ids, scores):
        import torch

        generators = self.generators or [None] * len(scores)
        drawn = torch.stack(
            [
                index[torch.multinomial(weights, 1, generator=g)]
                for (weights, index), g in zip(self.nucleus(scores), generators)
            ]
        )
        return torch.full_like(scores, -float("inf")).scatter(-1, drawn, 0.0)


def sampling(temperature: float, top_p: float) -> dict:
    """generate() arguments that sample with temperature and top-p (Nucleus); hf_answers seeds each prompt's draws."""
    from transformers import LogitsProcessorList

    return dict(do_sample=False, logits_processor=LogitsProcessorList([Nucleus(temperature, top_p)]))


def answer_losses(model, tokenizer, prompts: list[str], answers: list[str], batch_size: int) -> list[float]:
    """Each answer's mean per-token loss given its prompt (teacher forced), in nats.

    The tuned model's loss on the base model's own greedy answers, minus the base model's loss on them, is the
    drift: a cheap, deterministic proxy for the KL divergence from the base on these prompts (0 for the base itself).
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = []  # (prompt ids, [answer ids])
    for prompt, answer in zip(prompts, answers):
        head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        tail = tokenizer(answer, add_special_tokens=False)["input_ids"] or [pad]
        rows.append((head, [tail]))
    return [-logps.mean().item() for (logps,) in answer_logps(model, rows, batch_size, pad)]


def answer_logps(
    model, rows: list[tuple[list[int], list[list[int]]]], batch_size: int, pad: int, share_from: int = 64
) -> list[list]:
    """Teacher forced, for each (prompt ids, answers' ids): each answer's log-probability of each of its tokens given
    the prompt and the answer's tokens before it.

    Each distinct prompt runs once, however many rows and answers it has, and its KV cache is copied for each answer
    (a held-out row's reference and the preference pair with its prompt: three answers, one prompt pass). Prompts
    that begin with the same `share_from` tokens or more (a system turn and its tools) are batched together, and the
    beginning their batch shares runs once. Batches hold prompts of similar lengths (little padding), and only the
    positions that predict answer tokens go through the output head: a 49k-word head over every position costs a
    fifth of the model and gigabytes of logits."""
    import torch

    device = model.device
    followers: dict[tuple, list] = {}  # distinct prompt -> its (row, answer) indexes
    for i, (prompt, answers) in enumerate(rows):
        followers.setdefault(tuple(prompt), []).extend((i, j) for j in range(len(answers)))
    followers = {prompt: owners for prompt, owners in followers.items() if owners}
    # A sliding window counts cache slots, so padding between the shared beginning and the rest of a prompt would
    # narrow it: share beginnings only where no sequence reaches the window
    window = getattr(model.config.get_text_config(), "sliding_window", None)
    if window is not None and any(len(p) + len(a) > window for p, answers in rows for a in answers):
        share_from = 0
    out = [[None] * len(answers) for _, answers in rows]
    for chunk, shared in prompt_batches(list(followers), batch_size, share_from):
        cache, mask = None, torch.ones(len(chunk), shared, dtype=torch.long, device=device)
        if shared:  # one pass over the shared beginning, its cache copied for every prompt of the batch
            cache = model(input_ids=torch.tensor([chunk[0][:shared]], device=device), logits_to_keep=1).past_key_values
            cache.batch_select_indices(torch.zeros(len(chunk), dtype=torch.long, device=device))
        # The rest padded on the left, so each prompt's last position (it predicts the answer's first token) is the
        # batch's last, and a sliding-window cache keeps each prompt's own last tokens
        ids, rest_mask = padded([list(p[shared:]) for p in chunk], pad, device, left=True)
        mask = torch.cat([mask, rest_mask], 1)
        positions = (mask.cumsum(1) - 1).clamp(min=0)[:, shared:]
        prompted = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, logits_to_keep=1
        )
        owners = [(k, i, j) for k, prompt in enumerate(chunk) for i, j in followers[prompt]]
        index = torch.tensor([k for k, _, _ in owners], device=device)
        cache = prompted.past_key_values
        cache.batch_select_indices(index)
        answers = [rows[i][1][j] for _, i, j in owners]
        answer_ids, answer_mask = padded(answers, pad, device)
        width = answer_ids.shape[1]
        rest = model(
            input_ids=answer_ids,
            attention_mask=torch.cat([mask[index], answer_mask], 1),
            position_ids=mask.sum(1, keepdim=True)[index] + torch.arange(width, device=device),
            past_key_values=cache,
            logits_to_keep=torch.arange(width - 1, device=device),
        ).logits
        logits = torch.cat([prompted.logits[index], rest], 1)
        logps = logits.float().log_softmax(-1).gather(2, answer_ids[:, :, None]).squeeze(2)
        for a, (_, i, j) in enumerate(owners):
            out[i][j] = logps[a, : len(answers[a])]
    return out


def prompt_batches(prompts: list[tuple], batch_size: int, share_from: int) -> list[tuple[list[tuple], int]]:
    """The prompts in batches of similar lengths, each with how many leading tokens all its prompts share when that
    is at least share_from (0 otherwise). Prompts whose beginnings agree that far (neighbours once sorted) are
    batched among themselves; every prompt keeps at least its last token to run on its own."""
    families, family = [], []
    for prompt in sorted(prompts):
        if family and not (share_from and common_length(family[0], prompt) >= share_from):
            families.append(family)
            family = []
        family.append(prompt)
    families.append(family)
    alike = [f for f in families if len(f) > 1]
    loners = [p for f in families if len(f) == 1 for p in f]
    out = []
    for group in [*alike, loners]:
        group = sorted(group, key=len)
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            shared = min(common_length(chunk[0], p) for p in chunk[1:]) if len(chunk) > 1 else 0
            shared = min(shared, min(map(len, chunk)) - 1)
            out.append((chunk, shared if share_from and shared >= share_from else 0))
    return out


def common_length(a, b) -> int:
    """How many leading tokens two sequences share."""
    return next((n for n, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def padded(sequences: list[list[int]], pad: int, device, left: bool = False):
    """Token ids padded to the longest (on the right, or the left), and the attention mask that hides the padding."""
    import torch

    width = max(map(len, sequences))
    fill = lambda s, value: [value] * (width - len(s))  # noqa: E731
    ids = [fill(s, pad) + s if left else s + fill(s, pad) for s in sequences]
    mask = [fill(s, 0) + [1] * len(s) if left else [1] * len(s) + fill(s, 0) for s in sequences]
    return torch.tensor(ids, device=device), torch.tensor(mask, device=device)


def load_model(model_dir: str | Path, max_new_tokens: int, dtype: str = "auto"):
    """A transformers model ready for greedy answers on this process's threads: (model, tokenizer, generate kwargs)."""
    import torch
    from transformers import AutoTokenizer

    from tunemake.data.chat import stop_token_ids
    from tunemake.models.weights import load
    from tunemake.runtime import use_cores

    use_cores()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = load(Path(model_dir), dtype=dtype).eval().to("cuda" if torch.cuda.is_available() else "cpu")
    stops = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    generate = dict(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops, pad_token_id=pad)
    return model, tokenizer, generate


def render(tokenizer, conversations: list[dict]) -> list[str]:
    """Each conversation's prompt as the model sees it: its chat template, ready for the assistant's turn."""
    return [
        tokenizer.apply_chat_template(c["messages"], tokenize=False, add_generation_prompt=True) for c in conversations
    ]
