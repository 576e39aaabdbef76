//! One run per project: a second run waits or, with --no-wait, exits 3; a lock whose holder
//! was killed is free again.

use crate::common;
use common::Project;

#[test]
fn a_busy_project_refuses_with_no_wait_and_a_killed_holder_frees_it() {
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("artifacts")).unwrap();
    let held = autoscale::artifacts::lock::RunLock::acquire(p.path(), false, |_| {}).unwrap();
    p.pipeline(&["run", "--until", "ingest", "--no-wait"]).code(3).stderr_has("another `pipeline run` is using this project");
    drop(held);

    // A holder killed with SIGKILL: the kernel drops its lock.
    // -o: the lock belongs to flock itself, not to the command it runs.
    let mut holder =
        std::process::Command::new("flock").arg("-o").arg(p.path().join("artifacts/run.lock")).args(["sleep", "20"]).spawn().expect("util-linux flock");
    std::thread::sleep(std::time::Duration::from_millis(300));
    p.pipeline(&["run", "--until", "ingest", "--no-wait"]).code(3);
    holder.kill().unwrap();
    holder.wait().unwrap();
    p.pipeline(&["run", "--until", "ingest", "--no-wait"]).ok().stdout_has("ingest");
}
