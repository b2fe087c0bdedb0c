"""One replica serving requests with continuous batching, advanced lazily in simulated time.

Owns: the engine's scheduling loop (admission under KV-cache and sequence limits, chunked
prefill interleaved with decode, first and last tokens, per-request ITL), failure and restart,
and the load figures a router may read. Must not: choose replicas (``engine``), know the
network, or draw random numbers.

Each step, in the order vLLM's scheduler does it:
1. admit waiting requests first come, first served while the replica holds fewer than
   ``max_sequences`` and the KV cache can reserve the request's prompt + output tokens
   (reserved in full at admission, so there is no preemption; vLLM admits on the prompt and
   preempts under pressure, which ends at the same steady state with more churn);
2. compose the step: one token for every decoding sequence, then prompt chunks of admitted
   requests, in order, up to ``token_budget`` tokens in all (chunked prefill);
3. time it: decode step of the batch at its mean context (or the host overhead alone when
   nothing decodes) + each chunk's prefill work, P(done + chunk) - P(done), where P(n) is the
   prefill of an n-token prompt minus the step overhead. This is the performance model's
   capacity arithmetic (``perfmodel.capacity``) replayed step by step.
A request whose prompt completes in a step gets its first token at the step's end, then one token
per step; its mean ITL is (last token - first token) / (output - 1), and its max gap the longest
step in between.

Accounting (``window_s`` set): per window of that many seconds, by step start, what an engine's
metrics would show (``WindowStats``): decode steps, their decode time (the step's decode part,
prefill chunks excluded), running batch and context summed over them; prompts whose prefill
completed, their tokens, and the prefill time (chunk work + one step overhead per prompt: the
prompt's prefill alone, as an engine's prefill-time histogram reports it).

Laziness: a replica only runs its steps when the engine asks it to ``advance`` to a time (before
routing to it, delivering to it, or failing it). Every request it holds arrived before the step
that admits it starts, so the result is the same as stepping it in a global event loop.
"""

from __future__ import annotations

from array import array
from collections import deque
from enum import IntEnum

import numpy as np

from gridplace.sim.steps import ReplicaLimits, SpeedSchedule


class Status(IntEnum):
    PENDING = 0
    DONE = 1
    LOST = 2  # its replica failed under it, or no replica could take it
    UNFINISHED = 3  # still in flight when the run ended


class Request:
    """One request's journey; times in seconds of simulated time."""

    __slots__ = (
        "first_step",
        "first_token_s",
        "index",
        "itl_max_ms",
        "last_token_s",
        "output",
        "prefilled",
        "prompt",
        "region",
        "replica",
        "rtt_s",
        "rtt_z",
        "sent_s",
        "status",
        "workload",
    )

    def __init__(
        self,
        index: int,
        workload: int,
        region: int,
        sent_s: float,
        prompt: int,
        output: int,
        rtt_z: float,
    ) -> None:
        self.index, self.workload, self.region = index, workload, region
        self.sent_s, self.prompt, self.output, self.rtt_z = sent_s, prompt, output, rtt_z
        self.rtt_s = 0.0
        self.replica = -1
        self.prefilled = 0
        self.first_step = -1
        self.first_token_s = float("nan")
        self.last_token_s = float("nan")
        self.itl_max_ms = float("nan")
        self.status = Status.PENDING

    @property
    def tokens(self) -> int:
        return self.prompt + self.output


class WindowStats:
    """One window's engine figures (see the module docstring); times in ms."""

    __slots__ = ("batch_sum", "context_sum", "decode_ms", "decode_steps", "prefill_ms",
                 "prompt_tokens", "prompts")  # fmt: skip

    def __init__(self) -> None:
        self.decode_steps = 0
        self.decode_ms = 0.0
        self.batch_sum = 0
        self.context_sum = 0
        self.prompts = 0
        self.prompt_tokens = 0
        self.prefill_ms = 0.0


class Replica:
    """A replica's scheduler state (see the module docstring)."""

    def __init__(
        self,
        index: int,
        speed: SpeedSchedule,
        limits: ReplicaLimits,
        window_s: float | None = None,
    ) -> None:
        self.index = index
        self.speed = speed
        self.limits = limits
        self.window_s = window_s
        self.windows: dict[int, WindowStats] = {}
        self.alive = True
        self.steps_run = 0
        self._step_ends = array("d")  # end time of every step, by step index
        self._reset()

    def _reset(self) -> None:
        self.busy = False
        self.clock_s = 0.0  # end of the step in flight (when busy)
        self.waiting: deque[Request] = deque()
        self._prefilling: list[Request] = []  # admitted, prompt not done, FIFO
        self._completing: list[Request] = []  # prompt completes with the step in flight
        self._finishing: dict[int, list[Request]] = {}  # step index -> last token then
        self.running = 0
        self._decoding = 0  # sequences decoded by the step in flight
        self._context_sum = 0
        self._reserved_tokens = 0
        self.queued_prompt_tokens = 0  # prompt tokens not yet prefilled (router's metric)

    # -- load, as a metrics endpoint would show it ---------------------------------------------

    @property
    def sequences(self) -> int:
        """Requests held: decoding, prefilling and waiting."""
        return self.running + len(self._prefilling) + len(self._completing) + len(self.waiting)

    # -- the engine's interface -----------------------------------------------------------------

    def advance(self, until_s: float) -> None:
        """Run every step that ends at or before ``until_s``."""
        while self.busy and self.clock_s <= until_s:
            self._end_step()
            self._start_step(self.clock_s)

    def enqueue(self, request: Request, now_s: float) -> None:
        """A request reaches the replica at ``now_s`` (after ``advance(now_s)``)."""
        request.replica = self.index
        request.prefilled = 0
        self.waiting.append(request)
        self.queued_prompt_tokens += request.prompt
        if not self.busy:
            self._start_step(now_s)

    def fail(self) -> tuple[list[Request], list[Request]]:
        """The node went down (after ``advance``): (requests lost, waiting ones to re-route)."""
        lost = [*self._prefilling, *self._completing]
        for batch in self._finishing.values():
            lost.extend(batch)
        reroute = list(self.waiting)
        self.alive = False
        self._reset()
        return lost, reroute

    def restart(self, now_s: float) -> None:
        self.alive = True
        self.clock_s = now_s

    # -- the step loop --------------------------------------------------------------------------

    def _start_step(self, now_s: float) -> None:
        limits = self.limits
        waiting, prefilling = self.waiting, self._prefilling
        while waiting:
            head = waiting[0]
            if (
                self.running + len(prefilling) >= limits.max_sequences
                or self._reserved_tokens + head.tokens > limits.kv_tokens
            ):
                break
            waiting.popleft()
            self._reserved_tokens += head.tokens
            prefilling.append(head)
        speed = self.speed.at(now_s)
        overhead_ms = speed.overhead_ms
        budget = limits.token_budget - self.running
        work_ms = 0.0
        completed = 0
        for request in prefilling:
            if budget <= 0:
                break
            before = request.prefilled
            take = min(request.prompt - before, budget)
            after = before + take
            work_ms += speed.prefill_ms(after) - overhead_ms
            if before:
                work_ms -= speed.prefill_ms(before) - overhead_ms
            request.prefilled = after
            budget -= take
            self.queued_prompt_tokens -= take
            if after == request.prompt:
                completed += 1
        if completed:
            # Chunks go in order, so the completed prompts are a prefix of the list.
            self._completing = prefilling[:completed]
            del prefilling[:completed]
        running = self.running
        if running == 0 and budget == limits.token_budget:
            self.busy = False  # nothing to decode, no prompt to prefill: idle
            return
        decode_ms = speed.decode_ms(running, self._context_sum // running) if running else 0.0
        step_ms = (decode_ms if running else overhead_ms) + work_ms
        if self.window_s is not None:
            self._account(now_s, decode_ms, work_ms + completed * overhead_ms, completed)
        self._decoding = running
        self.busy = True
        self.clock_s = now_s + step_ms / 1000.0

    def _account(self, now_s: float, decode_ms: float, prefill_ms: float, completed: int) -> None:
        assert self.window_s is not None
        index = int(now_s // self.window_s)
        stats = self.windows.get(index)
        if stats is None:
            stats = self.windows[index] = WindowStats()
        if self.running:
            stats.decode_steps += 1
            stats.decode_ms += decode_ms
            stats.batch_sum += self.running
            stats.context_sum += self._context_sum
        stats.prefill_ms += prefill_ms
        stats.prompts += completed
        stats.prompt_tokens += sum(r.prompt for r in self._completing[:completed])

    def _end_step(self) -> None:
        now_s = self.clock_s
        step = len(self._step_ends)
        self._step_ends.append(now_s)
        self.steps_run += 1
        self._context_sum += self._decoding
        done = self._finishing.pop(step, None)
        if done:
            for request in done:
                self.running -= 1
                self._context_sum -= request.tokens
                self._finish(request, now_s, step)
        if self._completing:
            for request in self._completing:
                request.first_token_s = now_s
                request.first_step = step
                if request.output <= 1:
                    self._finish(request, now_s, step)
                    continue
                self.running += 1
                self._context_sum += request.prompt + 1
                last = step + request.output - 1
                bucket = self._finishing.get(last)
                if bucket is None:
                    self._finishing[last] = [request]
                else:
                    bucket.append(request)
            self._completing = []

    def _finish(self, request: Request, now_s: float, step: int) -> None:
        self._reserved_tokens -= request.tokens
        request.last_token_s = now_s
        request.status = Status.DONE
        if step > request.first_step:
            ends = np.frombuffer(self._step_ends, dtype=np.float64)
            gaps = np.diff(ends[request.first_step : step + 1])
            request.itl_max_ms = float(gaps.max()) * 1000.0
            del ends, gaps  # release the view before the array grows again
        else:
            request.itl_max_ms = 0.0

    # -- what a router estimates ----------------------------------------------------------------

    def expected_ms(
        self,
        now_s: float,
        prompt: int,
        output: int,
        mean_prompt: int,
        mean_output: int,
        in_transit: tuple[int, int] = (0, 0),
    ) -> float:
        """Expected server-side latency of a new request (TTFT + decode), from visible load.

        The router sees what a replica's metrics show: requests held, prompt tokens queued and
        its current step speed, plus what it sent there itself that has not arrived yet
        (``in_transit``: requests, prompt tokens). Steps are valued with the capacity model's
        interleaved step s(B) = decode(B) + B x prefill work / output at the workload's mean
        request; requests beyond the batch the KV cache holds wait for slots to free.
        """
        speed = self.speed.at(now_s)
        overhead_ms = speed.overhead_ms
        mean_work_ms = speed.prefill_ms(mean_prompt) - overhead_ms
        slots = max(
            1,
            min(self.limits.max_sequences, self.limits.kv_tokens // (mean_prompt + mean_output)),
        )
        batch = self.sequences + in_transit[0] + 1
        in_batch = min(batch, slots)
        context = mean_prompt + mean_output // 2
        step_ms = speed.decode_ms(in_batch, context) + in_batch * mean_work_ms / mean_output
        queued_prompt = self.queued_prompt_tokens + in_transit[1]
        wait_ms = queued_prompt * mean_work_ms / mean_prompt
        if batch > slots:
            wait_ms += (batch - slots) / slots * mean_output * step_ms
        ttft_ms = wait_ms + speed.prefill_ms(prompt) + step_ms / 2
        return ttft_ms + (output - 1) * step_ms
