#pragma once
// Crash tests kill jitd inside its risky windows. With JITD_FAILPOINTS unset (always, in
// production) nothing is installed and core::failpoint() is a no-op.
//   JITD_FAILPOINTS="after_journal_sync=0.2,after_kernel_ack=0.2,journal_mid_record=0.1"
//   JITD_FAILPOINT_SEED=42        (optional; default: random)
// Each named point then kills the process with SIGKILL with the given probability.

namespace jitd::daemon {

void install_failpoints_from_environment();

}  // namespace jitd::daemon
