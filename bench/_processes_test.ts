import assert from "node:assert/strict";
import { describeSummary, summarizeTrace, traceProcesses } from "./_processes.ts";

// Shaped like `strace -f -qq -e trace=execve,clone,clone3,fork,vfork -e signal=none -o FILE` of
// the hook: bash forks a command substitution, which forks again to exec deno; one of Deno's
// threads spawns the agent (whose `env` shebang and its own subshell are the agent's business);
// bash then runs the redactor call and an `rm`.
const TRACE =
  `100 execve("/usr/bin/bash", ["bash", "-c", "set -euo pipefail; [[ -n x ]]; source hooks/environment"...], 0x7ffd /* 9 vars */) = 0
100 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 101
101 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 102
102 execve("/root/.cargo/bin/deno", ["deno", "run"], 0x5638 /* 10 vars */) = -1 ENOENT (No such file or directory)
102 execve("/usr/bin/deno", ["deno", "run", "--allow-run=buildkite-agent", "cli.ts"], 0x5638 /* 10 vars */) = 0
102 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, exit_signal=0} => {parent_tid=[103]}, 88) = 103
103 clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD, stack=0x7fa6, stack_size=0x9000}, 88 <unfinished ...>
104 execve("/b/bin/buildkite-agent", ["/b/bin/buildkite-agent", "oidc", "request-token", "--audience", "buildkite"], 0x5638 /* 10 vars */ <unfinished ...>
103 <... clone3 resumed>)             = 104
104 <... execve resumed>)             = 0
104 execve("/usr/bin/bash", ["bash", "/b/bin/buildkite-agent", "oidc", "request-token"], 0x7ffc /* 10 vars */) = 0
104 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 105
105 execve("/usr/bin/sleep", ["sleep", "0.1"], 0x7ffc /* 10 vars */) = 0
100 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 106
106 execve("/b/bin/buildkite-agent", ["buildkite-agent", "redactor", "add"], 0x5654 /* 9 vars */) = 0
100 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 107
107 execve("/usr/bin/rm", ["rm", "-f", "/tmp/token-exchange-local.1.stderr"], 0x5654 /* 9 vars */) = 0
`;

Deno.test("summarizeTrace() sorts a hook's processes into agent calls, Deno and the rest", () => {
  const summary = summarizeTrace(TRACE);
  assert.deepEqual(summary, {
    agentCalls: ["oidc request-token", "redactor add"],
    deno: 1,
    programs: ["rm"],
    subshells: 1,
  });
  assert.equal(
    describeSummary(summary),
    "5 (buildkite-agent oidc request-token, buildkite-agent redactor add, deno, rm, 1 bash subshell)",
  );
});

Deno.test("summarizeTrace() counts the release binary as Deno when told its name", () => {
  const trace = TRACE.replaceAll("/usr/bin/deno", "/cache/token-exchange-x86_64-unknown-linux-gnu");
  assert.equal(summarizeTrace(trace).deno, 0);
  assert.equal(summarizeTrace(trace, ["token-exchange-x86_64-unknown-linux-gnu"]).deno, 1);
});

const strace = await new Deno.Command("strace", { args: ["-V"], stdout: "null", stderr: "null" })
  .output().then((output) => output.success, () => false);

Deno.test({
  name: "traceProcesses() sees what a real bash command starts",
  ignore: !strace,
  async fn() {
    const summary = await traceProcesses(
      ["bash", "-c", 'x="$(true)"; y="$(/bin/echo hi 2>/dev/null)"; /bin/true'],
      { PATH: "/usr/bin:/bin" },
    );
    // $(true) forks a subshell that runs the builtin; the redirection keeps bash from exec'ing
    // echo in its subshell, so that one forks twice; the last command is exec'd in place.
    assert.deepEqual(summary, { agentCalls: [], deno: 0, programs: ["echo"], subshells: 2 });
  },
});
