//! `rosh recreate` and `rosh watch` end to end on the local CPI.
//!
//! - With 20 web instances, `recreate web/0` times one recreation; then 10 agents are
//!   SIGKILLed: `watch` (default meltdown guard: 5 instances and 20 % within 600 s) repairs
//!   nothing and says why, and `recreate --failed --max-in-flight 10` brings all 10 back in
//!   parallel (both wall times are printed; the parallel run must take well under 10 times
//!   one).
//! - `watch` repairs a killed instance with no operator, records the repair as an event, and
//!   exits 0 on SIGTERM.
//!
//! Loopback ranges 127.171.0.0/16 and 127.172.0.0/16.

mod common;
mod deploy_support;

use std::collections::BTreeSet;
use std::io::Read;
use std::time::{Duration, Instant};

use deploy_support::{Director, kill_and_wait};

#[test]
fn recreate_failed_brings_back_10_of_20_in_parallel_after_watch_refused_in_meltdown() {
    let d = Director::new(171);
    let mut m = d.demo();
    m.watch_times("500-5000", "500-5000");
    m.instances("web", 20);
    d.deploy("demo", &m, "demo.yml", &["--max-in-flight", "10"]).expect_ok();
    assert!(d.cck_report("demo").1.is_empty());

    // One instance, for comparison.
    let web = d.group("demo", "web");
    let started = Instant::now();
    let out = d.ok(&["-d", "demo", "recreate", "web/0"]);
    let one = started.elapsed();
    assert!(out.contains("Recreated 1 instance(s)"), "{out}");
    assert_ne!(d.group("demo", "web")[0].vm, web[0].vm, "web/0 got a new VM");

    // Ten agents die.
    let web = d.group("demo", "web");
    let killed: Vec<_> = web.iter().filter(|r| r.index % 2 == 1).collect();
    assert_eq!(killed.len(), 10);
    for r in &killed {
        kill_and_wait(d.agent_pid(&r.vm.as_ref().unwrap().cid).expect("an agent"));
    }
    let expected: BTreeSet<(String, String)> =
        killed.iter().map(|r| ("unresponsive_agent".to_string(), r.label())).collect();
    assert_eq!(d.cck_report("demo").1, expected);

    // The resurrector sees 10 of 21 down at once: meltdown, nothing repaired, and it says why.
    let watched = d.rosh(&["-d", "demo", "watch", "--interval", "1", "--rounds", "1"]);
    let log = String::from_utf8_lossy(&watched.stderr).into_owned();
    assert!(watched.status.success(), "{log}");
    assert!(log.contains("meltdown: 10 of 21 instances went down within 600 s"), "{log}");
    assert!(log.contains("repairing nothing"), "{log}");
    assert_eq!(d.cck_report("demo").1, expected, "watch repaired nothing in a meltdown");
    let events: serde_json::Value = serde_json::from_str(&d.ok(&["-d", "demo", "events", "--json"])).unwrap();
    assert!(events.as_array().unwrap().iter().any(|e| e["action"] == "meltdown"), "{events:#}");

    // recreate --failed picks exactly the ten and brings them back, several at once.
    let started = Instant::now();
    let out = d.ok(&["-d", "demo", "recreate", "--failed", "--max-in-flight", "10"]);
    let ten = started.elapsed();
    assert!(out.contains("Recreated 10 instance(s)"), "{out}");
    eprintln!(
        "recreate: 1 instance {:.1} s; --failed, 10 of 20 instances (max_in_flight 10) {:.1} s ({:.1}x one)",
        one.as_secs_f64(),
        ten.as_secs_f64(),
        ten.as_secs_f64() / one.as_secs_f64()
    );
    assert!(d.cck_report("demo").1.is_empty());
    let after = d.group("demo", "web");
    for (before, now) in web.iter().zip(&after) {
        let recreated = before.vm != now.vm;
        assert_eq!(recreated, before.index % 2 == 1, "{}: only the failed ones are recreated", now.label());
        d.assert_running(now);
    }
    d.assert_no_orphans(&["demo"], "after recreate --failed");
    // Serially this would be ten times one recreation; the canary goes alone, then nine at once.
    assert!(ten < one * 6, "10 recreations took {ten:?}, one took {one:?}: not parallel");
}

#[test]
fn watch_repairs_a_killed_instance_with_no_operator_and_stops_on_sigterm() {
    let d = Director::new(172);
    let mut m = d.demo();
    m.watch_times("500-5000", "500-5000");
    d.deploy("demo", &m, "demo.yml", &[]).expect_ok();
    let web = d.group("demo", "web");
    let mut watcher = deploy_support::KillOnDrop(Some(
        d.command(&["-d", "demo", "watch", "--interval", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    std::thread::sleep(Duration::from_secs(2));
    kill_and_wait(d.agent_pid(&web[1].vm.as_ref().unwrap().cid).expect("an agent"));

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = d.group("demo", "web");
        if now[1].vm != web[1].vm && !now[1].dirty {
            break;
        }
        assert!(Instant::now() < deadline, "watch did not recreate web/1 in time");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(d.cck_report("demo").1.is_empty());
    d.assert_running(&d.group("demo", "web")[1]);
    assert_eq!(d.group("demo", "web")[0].vm, web[0].vm, "the healthy instance is left alone");

    // SIGTERM: a clean exit, and the log says what it did.
    let mut child = watcher.0.take().unwrap();
    // SAFETY: signalling the watch process this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(status.success(), "watch exited {status}:\n{log}");
    assert!(log.contains(&format!("{}: unresponsive_agent: recreating", web[1].label())), "{log}");
    assert!(log.contains(&format!("{}: recreated", web[1].label())), "{log}");
    assert!(log.contains("stopping"), "{log}");
    let events: serde_json::Value = serde_json::from_str(&d.ok(&["-d", "demo", "events", "--json"])).unwrap();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "repair" && e["object_name"] == web[1].label().as_str() && e["error"].is_null()),
        "{events:#}"
    );
    d.assert_no_orphans(&["demo"], "after watch");
}
