"""`manage.py runstack` (what `make run` starts): a real stack of processes, each SIGKILLed in turn.

Whatever it does about a dead child (restart it, or stop everything), no process it started may
survive it: a beat left behind would send every scheduled task twice once the stack is started again.
Processes are read from /proc, and each is told apart by its start time, so that a reused pid is not
mistaken for a survivor.
"""

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from personalize.devstack import GaveUp, Supervisor, free_port, spawn
from personalize.management.commands.runstack import CREATE_STAFF_HINT
from tests.conftest import ROOT, own_session_dying_with_parent, wait_for

ROLES = ("worker", "beat", "web")


def role_of(cmdline: str) -> str:
    if "runserver" in cmdline:
        return "web"
    if "redis-server" in cmdline:
        return "redis"
    for role in ("worker", "beat"):
        if f" {role} " in f" {cmdline} ":
            return role
    return "other"


def processes() -> dict[tuple[int, int], tuple[int, str]]:
    """{(pid, start time): (parent pid, command line)} of every live (not zombie) process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (name) "; the name may hold spaces
        state, ppid, start = fields[0], int(fields[1]), int(fields[19])
        if state != "Z":
            table[(int(entry.name), start)] = (ppid, cmdline.strip())
    return table


class Tree:
    """The stack's process tree, remembering every descendant ever seen."""

    def __init__(self, root_pid: int):
        self.root_pid = root_pid
        self.seen: dict[tuple[int, int], str] = {}

    def refresh(self) -> dict[tuple[int, int], tuple[int, str]]:
        """The live descendants now (also remembered in `seen`)."""
        table = processes()
        pids = {self.root_pid}
        descendants = {}
        grew = True
        while grew:
            grew = False
            for key, (ppid, cmdline) in table.items():
                if ppid in pids and key not in descendants:
                    descendants[key] = (ppid, cmdline)
                    pids.add(key[0])
                    grew = True
        self.seen.update({key: cmdline for key, (_, cmdline) in descendants.items()})
        return descendants

    def children(self) -> dict[str, tuple[int, int]]:
        """{role: (pid, start time)} of the stack's direct children."""
        return {
            role_of(cmdline): key for key, (ppid, cmdline) in self.refresh().items() if ppid == self.root_pid
        }

    def group(self, key: tuple[int, int]) -> set[tuple[int, int]]:
        """A process and its live descendants."""
        live = self.refresh()
        members, grew = {key}, True
        while grew:
            grew = False
            for other, (ppid, _) in live.items():
                if ppid in {pid for pid, _ in members} and other not in members:
                    members.add(other)
                    grew = True
        return members

    def survivors(self) -> list[str]:
        table = processes()
        return [f"{pid} {cmdline}" for (pid, start), cmdline in self.seen.items() if (pid, start) in table]


def answers_http(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=5)
    except urllib.error.HTTPError:
        return True  # an answer, whichever
    except OSError:
        return False
    return True


def kill_survivors(tree: Tree) -> None:
    """A failed run must not leave its processes to the tests after it."""
    table = processes()
    for pid, start in tree.seen:
        if (pid, start) in table:
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_killing_any_child_leaves_nothing_behind(tmp_path):
    """Each child SIGKILLed in turn is restarted (the others keep running), and stopping the stack
    stops every process it started. A stack that stopped itself instead would pass too, provided it
    left nothing."""
    log_path = tmp_path / "runstack.log"
    env = {
        **os.environ,
        "VAR_DIR": str(tmp_path / "var"),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "PYTHONUNBUFFERED": "1",
    }
    port = free_port()
    command = [sys.executable, "manage.py", "runstack", "--addr", f"127.0.0.1:{port}", "--no-demo"]
    with open(log_path, "wb") as log:
        stack = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=own_session_dying_with_parent,
        )  # fmt: skip
    tree = Tree(stack.pid)

    def output() -> str:
        return log_path.read_text(errors="replace")

    def ready():
        children = tree.children()
        if stack.poll() is not None:
            raise AssertionError(f"runstack exited with {stack.returncode}:\n{output()}")
        # Once the worker has forked its pool: killing its main process must take the pool too.
        if "web" in children and "worker" in children and len(tree.group(children["worker"])) > 1:
            return children
        return None

    try:
        initial = wait_for(ready, timeout=30, message="the worker and its pool, and the web server")
        # The worker first: its main process killed must not leave its pool or a beat behind.
        for role in sorted(initial, key=lambda role: role != "worker"):
            before = tree.children()
            group = tree.group(before[role])
            os.kill(before[role][0], signal.SIGKILL)

            def replaced_or_stopped(role=role, before=before):
                now = tree.children()
                return stack.poll() is not None or (role in now and now[role] != before[role] and now)

            after = wait_for(replaced_or_stopped, timeout=15, message=f"a new {role}, or the stack stopped")
            if stack.poll() is not None:
                break
            wait_for(
                lambda group=group: not group & set(processes()), timeout=5, message=f"the old {role} gone"
            )
            others = {r: key for r, key in before.items() if r != role}
            assert {r: after.get(r) for r in others} == others, "killing one child disturbed the others"
        else:
            # One of each: a second beat would send every scheduled task twice.
            roles = [role_of(cmdline) for ppid, cmdline in tree.refresh().values() if ppid == stack.pid]
            assert sorted(roles) == sorted(initial)
            assert "worker exited with code -9; restarting it." in output()
            wait_for(lambda: answers_http(port), timeout=15, message="the restarted web server")
            stack.send_signal(signal.SIGTERM)
            assert stack.wait(timeout=25) == 0, output()
        stack.wait(timeout=25)
        try:  # a process killed a moment ago may take a moment to go
            wait_for(lambda: not tree.survivors(), timeout=10)
        except AssertionError:
            pass
        assert not tree.survivors(), f"left behind:\n{tree.survivors()}\n{output()}"
        assert CREATE_STAFF_HINT in output()
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()
        kill_survivors(tree)
        from workers import app

        app.control.purge()  # a sweep its beat sent that its worker did not take is not another test's


def test_a_process_that_keeps_exiting_stops_the_supervisor():
    lines = []
    supervisor = Supervisor(max_restarts=2, window=60, log=lines.append)
    supervisor.start("crash", lambda: spawn([sys.executable, "-c", "raise SystemExit(3)"]))
    try:
        with pytest.raises(GaveUp, match="crash exited 3 times within 60 s"):
            supervisor.watch(interval=0.05)
    finally:
        supervisor.stop_all()
    assert lines == ["crash exited with code 3; restarting it."] * 2
