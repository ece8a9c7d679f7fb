"""``bridge sandbox`` as a user runs it: start it, paste the examples it prints, stop it.

This is the end-to-end check of the whole stack: the console script, gunicorn with
``deploy/gunicorn.conf.py``, an RQ worker, the embedded Redis, and both stand-ins.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.processes import free_port

# Generous deadlines: each wait is on a condition, and these only bound a failure.
START_TIMEOUT_SECONDS = 180
WAIT_SECONDS = 120
# How long the sandbox waits for each child to stop before it kills the child's group.
CHILD_STOP_TIMEOUT_SECONDS = 15


def read_examples(lines: queue.Queue, process: subprocess.Popen) -> list[tuple[str, str]]:
    """Collect the (comment, command) pairs the banner prints, until 'Press Ctrl-C'."""
    examples: list[tuple[str, str]] = []
    comment = ""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1).rstrip("\n")
        except queue.Empty:
            assert process.poll() is None, "bridge sandbox exited during start-up"
            continue
        if line.startswith("# "):
            comment = line[2:]
        elif line.startswith("curl "):
            examples.append((comment, line))
        elif line.startswith("Press Ctrl-C"):
            return examples
    pytest.fail("bridge sandbox did not print its examples in time")


def run(command: str) -> tuple[dict[str, str], dict]:
    """Run one pasted example; return its response headers (when -i, with the status as
    ``:status``) and JSON body."""
    out = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=WAIT_SECONDS, check=True
    ).stdout
    headers: dict[str, str] = {}
    if out.startswith("HTTP/"):
        head, _, out = out.partition("\n\n")  # text mode has turned CRLF into LF
        headers[":status"] = head.split()[1]
        for line in head.splitlines()[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return headers, json.loads(out)


@pytest.fixture
def sandbox(tmp_path: Path):
    assert shutil.which("curl"), "the sandbox examples use curl: install it (apt-get install curl)"
    ports = [str(free_port()) for _ in range(3)]
    data_dir = tmp_path / "sb"
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "sandbox", "--port", ports[0], "--crm-port", ports[1],
         "--finan-port", ports[2], "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, like a job in a terminal
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()
    try:
        yield process, read_examples(lines, process), data_dir
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()


def test_the_printed_examples_work_against_a_running_sandbox(sandbox):
    process, examples, data_dir = sandbox
    by_what = {what.split(" ")[0] + str(i): command for i, (what, command) in enumerate(examples)}
    assert len(examples) == 10, by_what

    answers = [run(command) for _, command in examples[:9]]
    (_, issued), (_, keyed), (replay_headers, replay), (_, updated), (_, cancelled) = answers[:5]
    (_, foreign), (_, record), (_, finan_log), (_, queued) = answers[5:]
    # The status each example's description states, shown by its -i.
    stated = {0: "201", 1: "201", 2: "201", 3: "200", 4: "201", 8: "202"}
    assert {i: answers[i][0].get(":status") for i in stated} == stated

    assert issued["success"] is True and issued["data"]["state"] == "issued"
    assert issued["data"]["total_amount"] == "6325000"
    assert replay_headers.get("idempotent-replayed") == "true"
    assert replay == keyed
    assert updated["data"]["state"] == "issued"
    assert cancelled["message"] == "Invoice Canceled successfully"
    assert cancelled["data"]["state"] == "cancelled"
    assert foreign["data"]["total_amount"] == "40499030"
    assert record["data"]["invoice_id"] == 19 and record["data"]["state"] == "issued"

    puts = [r for r in finan_log["requests"] if r["method"] == "PUT"]
    outcomes = [r["outcome"] for r in puts]
    # issue 17, update 17, cancel 17, issue 19; the repeat issue and the replay sent nothing
    assert outcomes == ["created", "updated", "updated", "created"], outcomes

    assert queued["data"]["state"] == "queued"
    deadline = time.monotonic() + WAIT_SECONDS  # its first queued attempt is after 5 s
    while (later := run(examples[9][1])[1])["data"]["state"] == "queued":
        assert time.monotonic() < deadline, "the worker did not send the queued invoice"
        time.sleep(0.5)
    assert later["data"]["state"] == "issued" and later["data"]["last_error"] is None

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=WAIT_SECONDS) == 0
    assert not (data_dir / "redis.sock").exists()


def processes_using(data_dir: Path) -> list[int]:
    """Processes whose environment names ``data_dir`` (every process the sandbox starts)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(data_dir).encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def test_ctrl_c_in_a_terminal_stops_every_process_of_the_sandbox(sandbox):
    process, _, data_dir = sandbox
    assert processes_using(data_dir), "the check would find nothing even while it runs"

    started = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole job

    assert process.wait(timeout=WAIT_SECONDS) == 0
    # Every child stopped on its own: the sandbox gives a child 15 s before it kills it, so
    # a child that hung would have made this take at least that long.
    took = time.monotonic() - started
    assert took < CHILD_STOP_TIMEOUT_SECONDS, f"a child had to be killed ({took:.1f} s)"
    deadline = time.monotonic() + WAIT_SECONDS
    while (left := processes_using(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == []


def test_a_busy_port_is_named_and_nothing_is_left_running(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        result = subprocess.run(
            [sys.executable, "-m", "bridge", "sandbox", "--port", str(free_port()),
             "--crm-port", busy, "--finan-port", str(free_port()),
             "--data-dir", str(tmp_path / "sb")],
            capture_output=True, text=True, timeout=WAIT_SECONDS,
        )  # fmt: skip

    assert result.returncode != 0
    assert f"port {busy}" in result.stderr and "--crm-port" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "sb" / "redis.sock").exists()
