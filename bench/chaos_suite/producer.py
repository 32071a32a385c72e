"""Sends the workload on schedule and writes down what was sent (the manifest).

Each send holds `gate`: the fault loop takes it while the broker is being restarted, so no
send is under way when the server goes away (a send whose reply is lost could not be told
from one that never arrived, and the manifest must be exact).
"""

from __future__ import annotations

import threading
import time

from chaos_suite import plan as plans
from chaos_suite import tasks
from fleet import chord

#: Attempts per send when the broker refuses it (e.g. a busy SQLite database).
SEND_ATTEMPTS = 50


class Producer(threading.Thread):
    def __init__(self, plan: plans.Plan, started: float, gate: threading.Lock):
        super().__init__(name="chaos-producer", daemon=True)
        self.plan = plan
        self.started = started  #: time.time() at the run's start
        self.gate = gate
        self.manifest: list[dict] = []
        self.send_errors: list[str] = []
        self.failed: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            for send in self.plan.sends:
                delay = self.started + send.at - time.time()
                if delay > 0 and self._halt.wait(delay):
                    return
                with self.gate:
                    self._send_retrying(send)
        except Exception as exc:  # reported by the run, never silently lost
            self.failed = f"{type(exc).__name__}: {exc}"

    def halt(self) -> None:
        self._halt.set()

    def _send_retrying(self, send: plans.Send) -> None:
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                self._send(send)
                return
            except Exception as exc:
                self.send_errors.append(f"{send.kind} {send.ids[0]}: {type(exc).__name__}: "
                                        f"{exc}")
                if attempt == SEND_ATTEMPTS:
                    raise
                time.sleep(0.2)

    def _send(self, send: plans.Send) -> None:
        now = time.time()
        if send.kind == "chord":
            members, body = send.ids[:-1], send.ids[-1]
            header = [tasks.part.s(send.number, i).set(task_id=task_id)
                      for i, task_id in enumerate(members)]
            result = chord(header)(tasks.join.s(send.number).set(task_id=body))
            group = result.parent.id  # where the chord counts: chord:<group>:count, :fired
            self.manifest += [self._entry(i, "member", now, chord=send.number, group=group)
                              for i in members]
            self.manifest.append(self._entry(body, "body", now, chord=send.number,
                                             group=group))
            return
        task = getattr(tasks, send.kind)
        args = (send.number, send.fails) if send.kind == "flaky" else (send.number,)
        options = {"task_id": send.ids[0]}
        if send.acks_late:
            options["acks_late"] = True
        eta = None
        if send.countdown is not None:  # the message's own eta is in the ledger's lines
            options["countdown"] = send.countdown
            eta = now + send.countdown
        task.apply_async(args, **options)
        self.manifest.append(self._entry(send.ids[0], send.kind, now, eta=eta,
                                         fails=send.fails, acks_late=send.acks_late))

    @staticmethod
    def _entry(task_id: str, kind: str, sent: float, acks_late: bool = False,
               **extra) -> dict:
        return {"id": task_id, "kind": kind, "task": plans.TASK_NAMES[kind],
                "acks_late": acks_late or kind in plans.ACKS_LATE, "sent": sent, **extra}
