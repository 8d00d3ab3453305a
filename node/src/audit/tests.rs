//! Tests of the audit log: chaining, durability across reopen, group commits,
//! recovery of a crashed tail, migration from sled, and how a broken disk stops it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quorate_keys::audit::{verify_chain, AuditRecord, GENESIS_HASH};

use super::file::SYNCED_DIRS;
use super::*;

fn ignore_flushes() -> FlushObserver {
    Box::new(|_| {})
}

/// Opens a sled store, waiting for the lock: sled releases it from background
/// threads shortly after the last handle of an in-process reopen is dropped.
fn open_db(dir: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::Config::new()
            .path(dir.join("sled"))
            .flush_every_ms(None)
            .open()
        {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    }
}

#[test]
fn appended_records_chain_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let open =
        || AuditLog::open(dir.path(), &open_db(dir.path()), "node-1", ignore_flushes()).unwrap();
    {
        let log = open();
        for i in 0..3 {
            log.append(AuditRecord {
                event: "sign_share".into(),
                key_id: format!("k{i}"),
                ..Default::default()
            })
            .unwrap();
        }
    }
    let log = open();
    assert_eq!(log.len(), 3);
    log.append(AuditRecord {
        event: "key_installed".into(),
        ..Default::default()
    })
    .unwrap();
    let records: Vec<_> = log.read_from(0).unwrap().map(Result::unwrap).collect();
    assert_eq!(verify_chain(records).unwrap().0, 4);
}

#[test]
fn every_flush_is_reported_with_its_duration() {
    let dir = tempfile::tempdir().unwrap();
    let reported = Arc::new(Mutex::new(Vec::new()));
    let log = {
        let reported = reported.clone();
        AuditLog::open(
            dir.path(),
            &open_db(dir.path()),
            "node-1",
            Box::new(move |took| reported.lock().unwrap().push(took)),
        )
        .unwrap()
    };
    for i in 0..3 {
        log.append(record(i)).unwrap();
    }
    let flushes = log.flushes();
    // The flusher reports a flush just after it publishes it: closing the log
    // joins the flusher thread, so every report is in by then.
    drop(log);
    let reported = reported.lock().unwrap().clone();
    assert_eq!(reported.len() as u64, flushes);
    assert!(flushes >= 1);
    assert!(reported.iter().all(|took| *took > Duration::ZERO));
}

fn open_log(dir: &std::path::Path) -> std::sync::Arc<AuditLog> {
    std::sync::Arc::new(AuditLog::open(dir, &open_db(dir), "node-1", ignore_flushes()).unwrap())
}

fn record(i: usize) -> AuditRecord {
    AuditRecord {
        event: "sign_share".into(),
        key_id: format!("k{i}"),
        ..Default::default()
    }
}

#[test]
fn appends_waiting_for_a_flush_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    // Stall the flusher after its first flush, as a slow disk would, while
    // eight appends queue behind it.
    let stalled = log.flusher.flushed.lock().unwrap();
    let appenders: Vec<_> = (0..8)
        .map(|i| {
            let log = log.clone();
            std::thread::spawn(move || log.append(record(i)).unwrap())
        })
        .collect();
    while log.len() < 8 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(
        appenders.iter().all(|a| !a.is_finished()),
        "no append returns before its record is flushed"
    );
    drop(stalled);
    for a in appenders {
        a.join().unwrap();
    }
    // The flush under way when the appends queued, and one for all the rest.
    assert!(
        log.flushes() <= 2,
        "{} flushes for 8 records",
        log.flushes()
    );
    let records: Vec<_> = log.read_from(0).unwrap().map(Result::unwrap).collect();
    assert_eq!(verify_chain(records).unwrap().0, 8);
}

#[test]
fn async_appends_return_once_durable_and_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stalled = log.flusher.flushed.lock().unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let log = log.clone();
            runtime.spawn(async move { log.append_durable(record(i)).await.unwrap() })
        })
        .collect();
    // Until all 16 have asked for their flush: an append asks after it has
    // written its record (and `len` counts it), so waiting on `len` alone could
    // let the flusher resume before the last one asked, and flush it apart.
    while log.flusher.queue().requested_below < 16 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(tasks.iter().all(|t| !t.is_finished()));
    drop(stalled);
    let seqs: Vec<u64> = runtime.block_on(async {
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().seq);
        }
        seqs
    });
    assert_eq!(seqs.len(), 16);
    assert!(
        log.flushes() <= 2,
        "{} flushes for 16 records",
        log.flushes()
    );
    drop(runtime);
    // Everything acknowledged is in the store after a reopen.
    drop(std::sync::Arc::try_unwrap(log).unwrap());
    let log = AuditLog::open(dir.path(), &open_db(dir.path()), "node-1", ignore_flushes()).unwrap();
    assert_eq!(log.len(), 16);
}

fn append_three(dir: &std::path::Path) {
    let log = open_log(dir);
    for i in 0..3 {
        log.append(record(i)).unwrap();
    }
}

#[test]
fn an_unfinished_last_line_left_by_a_crash_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    append_three(dir.path());
    let path = log_path(dir.path());
    let whole = std::fs::read(&path).unwrap();
    // A crash in the middle of the fourth record's write.
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(br#"{"format":"quorate-audit/1","seq":3,"ti"#)
        .unwrap();
    drop(file);
    let log = open_log(dir.path());
    assert_eq!(log.len(), 3);
    assert_eq!(std::fs::read(&path).unwrap(), whole);
    log.append(record(3)).unwrap();
    let records: Vec<_> = log.read_from(0).unwrap().map(Result::unwrap).collect();
    assert_eq!(verify_chain(records).unwrap().0, 4);
}

#[test]
fn a_last_record_that_does_not_parse_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    append_three(dir.path());
    let mut file = OpenOptions::new()
        .append(true)
        .open(log_path(dir.path()))
        .unwrap();
    file.write_all(b"not a record\n").unwrap();
    drop(file);
    let err =
        AuditLog::open(dir.path(), &open_db(dir.path()), "node-1", ignore_flushes()).unwrap_err();
    assert!(matches!(err, NodeError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("does not parse"), "{err}");
}

#[test]
fn read_from_starts_at_the_given_record() {
    let dir = tempfile::tempdir().unwrap();
    append_three(dir.path());
    let log = open_log(dir.path());
    let seqs: Vec<u64> = log.read_from(1).unwrap().map(|r| r.unwrap().0).collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(log.read_from(3).unwrap().count(), 0);
}

#[test]
fn records_of_an_earlier_builds_sled_tree_move_into_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    // The layout before the log file: records under their big-endian seq in
    // sled's tree `audit`.
    let mut stored = Vec::new();
    {
        let db = open_db(dir.path());
        let tree = db.open_tree("audit").unwrap();
        let mut prev = GENESIS_HASH.to_string();
        for i in 0..3u64 {
            let sealed = record(i as usize).seal(i, &prev);
            prev = sealed.hash.clone();
            tree.insert(i.to_be_bytes(), sealed.encode()).unwrap();
            stored.push((i, sealed.encode()));
        }
        db.flush().unwrap();
    }
    let log = open_log(dir.path());
    assert_eq!(log.len(), 3);
    log.append(record(3)).unwrap();
    let records: Vec<_> = log.read_from(0).unwrap().map(Result::unwrap).collect();
    assert_eq!(records[..3], stored[..]);
    assert_eq!(verify_chain(records).unwrap().0, 4);
    drop(log);
    let db = open_db(dir.path());
    assert!(
        !db.tree_names().iter().any(|n| n.as_ref() == b"audit"),
        "the sled tree is dropped once the file holds its records"
    );
}

/// A log whose every `fdatasync` fails, as on a disk that has gone bad.
fn open_failing_log(dir: &std::path::Path) -> AuditLog {
    AuditLog::open_with_sync(
        dir,
        &open_db(dir),
        "node-1",
        ignore_flushes(),
        |_: &File| Err(std::io::Error::other("EIO")),
    )
    .unwrap()
}

#[test]
fn after_a_failed_flush_the_log_refuses_records_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_failing_log(dir.path());
    assert!(log.check_writable().is_ok());
    let err = log.append(record(0)).unwrap_err();
    assert!(err.to_string().contains("EIO"), "{err}");
    let len = std::fs::metadata(log_path(dir.path())).unwrap().len();

    let err = log.check_writable().unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    let err = log.insert(record(1)).unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(matches!(err, NodeError::AuditLogBroken { .. }), "{err}");
    assert!(err.to_string().contains("EIO"), "{err}");
    // Nothing more was written after the failure.
    assert_eq!(log.len(), 1);
    assert_eq!(std::fs::metadata(log_path(dir.path())).unwrap().len(), len);
}

#[test]
fn a_failed_write_breaks_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_log(dir.path());
    log.append(record(0)).unwrap();
    let len = std::fs::metadata(log_path(dir.path())).unwrap().len();
    // A handle that can neither write nor truncate: the write fails, and so
    // does cutting off what it may have left.
    Arc::get_mut(&mut log).unwrap().file = Arc::new(File::open(log_path(dir.path())).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // Someone (the node's health) is already waiting when the write fails: no
    // flush follows to wake it, so marking the log broken must.
    let waiting = {
        let log = log.clone();
        runtime.spawn(async move { log.wait_broken().await })
    };
    runtime.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    assert!(
        !waiting.is_finished(),
        "a healthy log is not reported broken"
    );

    let err = log.insert(record(1)).unwrap_err();
    assert!(err.to_string().contains("cannot append"), "{err}");
    let err = log.check_writable().unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(err.to_string().contains("cutting off"), "{err}");
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), waiting).await })
        .expect("a broken log is reported")
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(std::fs::metadata(log_path(dir.path())).unwrap().len(), len);
}

#[test]
fn wait_broken_returns_once_a_flush_fails() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_failing_log(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let waited =
        |wait| runtime.block_on(async { tokio::time::timeout(wait, log.wait_broken()).await });
    assert!(
        waited(Duration::from_millis(50)).is_err(),
        "a healthy log is not reported broken"
    );
    log.append(record(0)).unwrap_err();
    waited(Duration::from_secs(10)).expect("a broken log is reported");
}

#[test]
fn a_record_whose_flush_has_not_completed_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    // A disk that is slow while the test holds `disk`.
    let disk = std::sync::Arc::new(std::sync::Mutex::new(()));
    let log = {
        let disk = disk.clone();
        AuditLog::open_with_sync(
            dir.path(),
            &open_db(dir.path()),
            "node-1",
            ignore_flushes(),
            move |file: &File| {
                let _slow = disk.lock().unwrap();
                file.sync_data()
            },
        )
        .unwrap()
    };
    log.append(record(0)).unwrap();
    let stalled = disk.lock().unwrap();
    let pending = log.insert(record(1)).unwrap();
    assert_eq!(log.len(), 2);
    let seqs: Vec<u64> = log.read_from(0).unwrap().map(|r| r.unwrap().0).collect();
    assert_eq!(seqs, [0], "only the flushed record is served");
    assert_eq!(log.read_from(1).unwrap().count(), 0);
    drop(stalled);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(log.durable(pending))
        .unwrap();
    let seqs: Vec<u64> = log.read_from(0).unwrap().map(|r| r.unwrap().0).collect();
    assert_eq!(seqs, [0, 1]);
}

#[test]
fn opening_a_new_log_syncs_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    SYNCED_DIRS.with(|synced| synced.borrow_mut().clear());
    let log = open_log(dir.path());
    assert!(log.is_empty());
    let synced = SYNCED_DIRS.with(|synced| synced.borrow().clone());
    assert!(
        synced.iter().any(|d| d == dir.path()),
        "{synced:?} lacks {}",
        dir.path().display()
    );
}

#[test]
fn the_merkle_tree_is_rebuilt_from_the_file_at_open_and_grows_on() {
    let dir = tempfile::tempdir().unwrap();
    let open =
        || AuditLog::open(dir.path(), &open_db(dir.path()), "node-1", ignore_flushes()).unwrap();
    let (size, root) = {
        let log = open();
        for i in 0..5 {
            log.append(record(i)).unwrap();
        }
        log.durable_root()
    };
    assert_eq!(size, 5);
    let log = open();
    assert_eq!(
        log.durable_root(),
        (5, root),
        "the same tree after reopening"
    );
    log.append(record(5)).unwrap();
    let (size, grown) = log.durable_root();
    assert_eq!(size, 6);
    // The tree is over the records exactly as the file holds them.
    let mut expected = quorate_keys::merkle::Tree::new();
    for item in log.read_from(0).unwrap() {
        expected.push(&item.unwrap().1);
    }
    assert_eq!(grown, expected.root(6).unwrap());
    let proof = log.consistency_proof(5, 6).unwrap();
    assert!(quorate_keys::merkle::verify_consistency(
        5, 6, &root, &grown, &proof
    ));
    let (_, bytes) = log.read_from(3).unwrap().next().unwrap().unwrap();
    let proof = log.inclusion_proof(3, 6).unwrap();
    assert!(quorate_keys::merkle::verify_inclusion(
        3,
        6,
        &quorate_keys::merkle::leaf_hash(&bytes),
        &proof,
        &grown
    ));
}

/// A log written before the tree existed (records only, nothing else on disk)
/// gets its tree at open, with every record a leaf: no record lost.
#[test]
fn a_log_written_by_an_earlier_build_gets_a_tree_over_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut prev = GENESIS_HASH.to_string();
    let mut lines = Vec::new();
    for i in 0..7 {
        let r = record(i as usize).seal(i, &prev);
        prev = r.hash.clone();
        lines.push(r.encode());
    }
    let mut file = File::create(log_path(dir.path())).unwrap();
    for line in &lines {
        file.write_all(line).unwrap();
        file.write_all(b"\n").unwrap();
    }
    drop(file);
    let log = AuditLog::open(dir.path(), &open_db(dir.path()), "node-1", ignore_flushes()).unwrap();
    let mut expected = quorate_keys::merkle::Tree::new();
    for line in &lines {
        expected.push(line);
    }
    assert_eq!(log.durable_root(), (7, expected.root(7).unwrap()));
}

#[test]
fn proofs_beyond_the_durable_log_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), &open_db(dir.path()), "node-1", ignore_flushes()).unwrap();
    log.append(record(0)).unwrap();
    log.append(record(1)).unwrap();
    assert!(matches!(
        log.inclusion_proof(0, 3),
        Err(NodeError::AuditProof(_))
    ));
    assert!(matches!(
        log.consistency_proof(1, 3),
        Err(NodeError::AuditProof(_))
    ));
    assert!(log.consistency_proof(1, 2).is_ok());
}

#[test]
fn a_log_whose_line_count_disagrees_with_its_last_seq_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log =
            AuditLog::open(dir.path(), &open_db(dir.path()), "node-1", ignore_flushes()).unwrap();
        for i in 0..4 {
            log.append(record(i)).unwrap();
        }
    }
    // A record cut out of the middle: appending after it would sign the gap into
    // the tree.
    let path = log_path(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err =
        AuditLog::open(dir.path(), &open_db(dir.path()), "node-1", ignore_flushes()).unwrap_err();
    assert!(matches!(err, NodeError::Corrupt(_)), "{err:?}");
}
