//! The tools' integration tests, in one binary (`cargo test -p ringsock-tools --test it`): the
//! hostile-peer suite against `ringsock-echo`, and `ringsock-load` briefly in every scenario.
//! Both run the tools' binaries as child processes (`CARGO_BIN_EXE_…`).

use std::sync::{Mutex, MutexGuard};

mod hostile;
mod load_smoke;

/// One measured run at a time: a hostile case measures its server's CPU, memory and round trips,
/// and another attack or a load run beside it would be measured too.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Takes [`ONE_AT_A_TIME`] (a test that failed holding it does not poison it for the others).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}
