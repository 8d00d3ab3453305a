//! `quorate-testnet up` as an operator runs it: it writes testnet.json once the
//! network serves, and SIGTERM stops every process it started.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bin_dir;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use quorate_testnet::spec::TestnetJson;

fn alive(pid: u32) -> bool {
    // Signal 0 checks for existence; a reaped or vanished process is gone. A zombie
    // still counts, so also look at its state.
    if kill(Pid::from_raw(pid as i32), None).is_err() {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .starts_with('Z')
}

#[test]
fn up_writes_testnet_json_and_sigterm_stops_every_process() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("net");
    let mut up = Command::new(bin_dir().join("quorate-testnet"))
        .arg("up")
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Learn when it says it serves (after signing and verifying with every key).
    let stdout = up.stdout.take().unwrap();
    let (serving_tx, serving_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("serving") {
                let _ = serving_tx.send(());
            }
        }
    });
    let started = Instant::now();
    let testnet = loop {
        if let Ok(t) = TestnetJson::read(&dir) {
            break t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no testnet.json within 60 s"
        );
        assert!(up.try_wait().unwrap().is_none(), "up exited early");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(testnet.nodes.len(), 5);
    assert!(testnet.coordinator.starts_with("https://127.0.0.1:"));
    assert!(
        testnet.keys.iter().any(|k| k.policy.is_some()),
        "the EU-policy key is listed"
    );
    let pids: Vec<u32> = testnet.nodes.iter().map(|n| n.pid).collect();
    assert!(pids.iter().all(|p| alive(*p)));

    serving_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("up reports that it serves");
    kill(Pid::from_raw(up.id() as i32), Signal::SIGTERM).unwrap();
    let stopped = Instant::now();
    loop {
        if let Some(status) = up.try_wait().unwrap() {
            assert!(status.success(), "up exited with {status}");
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "up did not stop within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in pids {
        assert!(!alive(pid), "node process {pid} outlived `up`");
    }
}
