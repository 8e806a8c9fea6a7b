//! The isolation platforms on this machine: every built-in workload runs on
//! host, runc and gVisor (and in a qemu microVM), reports its throughput,
//! and leaves nothing behind — after success, failure, a workload never
//! started, and Ctrl-C. Also `record --workload` and `stress`. Needs root,
//! runc and runsc (.ci/run installs them).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lockscope_platform::{Env, InstanceSpec, Output, PlatformKind, UserRoot};
use lockscope_workloads::meter::Line;
use serde_json::Value;

mod common;
use common::{serial, LOCKSCOPE};

/// A work root on a disk file system (the file workloads measure it).
fn work_root() -> tempfile::TempDir {
    std::fs::create_dir_all("/var/tmp").unwrap();
    tempfile::Builder::new().prefix("lockscope-platform-test").tempdir_in("/var/tmp").unwrap()
}

fn env(root: &Path) -> Env {
    Env { lockscope: PathBuf::from(LOCKSCOPE), work_root: root.to_owned(), ..Env::new(root).unwrap() }
}

/// Everything an instance could leave behind: files in the work root,
/// processes naming it, lockscope cgroups, containers the runtimes know of.
fn leftovers(root: &Path) -> Vec<String> {
    let files = std::fs::read_dir(root).into_iter().flatten().flatten();
    let mut found: Vec<String> = files.map(|e| format!("file {}", e.path().display())).collect();
    let needle = root.display().to_string();
    for pid in lockscope_proc::procfs::processes_with_arg_containing(&needle) {
        found.push(format!(
            "process {pid}: {}",
            std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().replace('\0', " ")
        ));
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dirs = std::fs::read_dir(hierarchy.path()).into_iter().flatten().flatten();
        for d in dirs.filter(|d| d.file_name().to_string_lossy().starts_with("lockscope-")) {
            found.push(format!("cgroup {}", d.path().display()));
        }
        if hierarchy.file_name().to_string_lossy().starts_with("lockscope-") {
            found.push(format!("cgroup {}", hierarchy.path().display()));
        }
    }
    for (program, root) in [("runc", "/run/lockscope/runc"), ("runsc", "/run/lockscope/runsc")] {
        let out = Command::new(program).args(["--root", root, "list", "-q"]).output().unwrap();
        found.extend(String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(|l| format!("{program} container {l}")));
    }
    found
}

/// Leftovers can take a moment to go (a killed process being reaped).
fn assert_clean(root: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftovers(root);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left behind: {left:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a workload on a platform to its end; returns its output and how it ended.
fn run_to_end(kind: PlatformKind, args: &str, env: &Env, timeout: Duration) -> (String, String) {
    let spec = InstanceSpec {
        name: args.split_whitespace().next().unwrap().to_owned(),
        workload: shlex::split(args).unwrap(),
        output: Output::Capture,
        ..InstanceSpec::default()
    };
    run_spec_to_end(kind, &spec, env, timeout)
}

fn run_spec_to_end(kind: PlatformKind, spec: &InstanceSpec, env: &Env, timeout: Duration) -> (String, String) {
    let args = spec.workload.join(" ");
    let mut instance = kind.create(spec, env).unwrap_or_else(|e| panic!("{kind} {args}: {e}"));
    let mut output = instance.take_output().expect("output captured");
    instance.start().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = output.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let exit = loop {
        if let Some(exit) = instance.try_wait() {
            break exit;
        }
        if Instant::now() > deadline {
            instance.stop();
            let seen = reader.join().unwrap();
            panic!("{kind} {args}: still running after {timeout:?}; its output so far:\n{seen}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    instance.stop();
    (reader.join().unwrap(), exit)
}

fn total(output: &str) -> Option<lockscope_workloads::meter::Sample> {
    output.lines().find_map(|l| match Line::parse(l) {
        Some(Line::Total(s)) => Some(s),
        _ => None,
    })
}

const WORKLOADS: [&str; 5] = [
    "mem --size 8k --total 16m --rounds 2",
    "file-list --files 300 --rounds 3",
    "file-create --files 300 --rounds 2",
    "file-delete --files 300 --rounds 2",
    "trasher --target mixed --rounds 4",
];

/// The application workloads, briefly; each reports throughput as the microbenchmarks do.
const APPLICATIONS: [&str; 10] = [
    "image-processing --rounds 2",
    "video-processing --rounds 2",
    "face-detection --rounds 2",
    "lr-training --rounds 2",
    "cnn --rounds 2",
    "rnn --rounds 2",
    "video-transcode --rounds 2",
    "data-caching --rounds 2",
    "data-caching-cold --rounds 2",
    "graph-analytics --rounds 2",
];

/// A program that prints its host name and the address it resolves to.
const NAME_AND_ADDRESS: &str = "/usr/bin/python3 -c 'import socket; n = socket.gethostname(); print(\"name\", n, socket.gethostbyname(n))'";

/// What [`NAME_AND_ADDRESS`] prints in a container or microVM: its own name
/// resolves, as under Docker or Podman (Spark looks it up).
const OWN_NAME_RESOLVES: &str = "name lockscope 127.0.1.1";

fn every_workload_on(kind: PlatformKind) {
    let _guard = serial();
    workloads_run_to_completion_on(kind, &WORKLOADS);
}

/// Each application workload, and a program of the user's on the host's Python.
fn applications_and_programs_on(kind: PlatformKind) {
    let _guard = serial();
    workloads_run_to_completion_on(kind, &APPLICATIONS);
    let root = work_root();
    let program = "command -- /usr/bin/python3 -c 'import PIL, sys; print(\"a program of the user\", PIL.__name__, sys.executable)'";
    let (out, exit) = run_to_end(kind, program, &env(root.path()), Duration::from_secs(120));
    assert_eq!(out.trim(), "a program of the user PIL /usr/bin/python3", "{kind}");
    assert_eq!(exit, "exit status 0", "{kind}");
    let (_, exit) = run_to_end(kind, "command -- /usr/bin/python3 -c 'raise SystemExit(3)'", &env(root.path()), Duration::from_secs(120));
    assert!(exit.contains("/usr/bin/python3 exited with exit status: 3"), "{kind}: {exit}");
    if kind != PlatformKind::Host {
        let (out, _) = run_to_end(kind, &format!("command -- {NAME_AND_ADDRESS}"), &env(root.path()), Duration::from_secs(120));
        assert_eq!(out.trim(), OWN_NAME_RESOLVES, "{kind}");
    }
    assert_clean(root.path());
}

#[test]
fn applications_and_programs_run_on_the_host() {
    applications_and_programs_on(PlatformKind::Host);
}

#[test]
fn applications_and_programs_run_in_runc() {
    applications_and_programs_on(PlatformKind::Runc);
}

#[test]
fn applications_and_programs_run_in_gvisor() {
    applications_and_programs_on(PlatformKind::Gvisor);
}

/// In one microVM, as a program of the user's: every application workload,
/// then programs on the host's Python, then a failing exit. One boot, not
/// thirteen: under emulation a boot costs about 15 s, the workloads 8 minutes.
#[test]
fn applications_and_programs_run_in_a_microvm() {
    let _guard = serial();
    let root = work_root();
    let script = APPLICATIONS
        .iter()
        .map(|args| format!("lockscope workload {args}"))
        .chain([
            "/usr/bin/python3 -c 'import PIL; print(\"a program of the user\", PIL.__name__)'".into(),
            NAME_AND_ADDRESS.into(),
            "exit 3".into(),
        ])
        .collect::<Vec<_>>()
        .join(" && ");
    let program = format!("command -- /bin/sh -c {}", shlex::try_quote(&script).unwrap());
    let (out, exit) = run_to_end(PlatformKind::Microvm, &program, &env(root.path()), Duration::from_secs(1200));
    for args in APPLICATIONS {
        let name = args.split_whitespace().next().unwrap();
        let t = out
            .lines()
            .filter_map(|l| match Line::parse(l) {
                Some(Line::Total(t)) if t.workload == name => Some(t),
                _ => None,
            })
            .next()
            .unwrap_or_else(|| panic!("microvm {args}: no throughput reported; output:\n{out}"));
        assert!(t.ops > 0 && t.ops_per_sec > 0.0, "microvm {args}: {t:?}");
    }
    assert!(out.lines().any(|l| l.trim() == "a program of the user PIL"), "{out}");
    assert!(out.lines().any(|l| l.trim() == OWN_NAME_RESOLVES), "{out}");
    assert!(exit.contains("/bin/sh exited with exit status: 3"), "{exit}");
    assert_clean(root.path());
}

/// Callers hold the serial guard.
fn workloads_run_to_completion_on(kind: PlatformKind, workloads: &[&str]) {
    let root = work_root();
    let env = env(root.path());
    for &args in workloads {
        let (out, exit) = run_to_end(kind, args, &env, Duration::from_secs(120));
        let t = total(&out).unwrap_or_else(|| panic!("{kind} {args}: no throughput reported; output:\n{out}"));
        assert!(t.ops > 0 && t.ops_per_sec > 0.0 && !t.unit.is_empty(), "{kind} {args}: {t:?}");
        assert_eq!(t.workload, args.split_whitespace().next().unwrap());
        assert_eq!(exit, "exit status 0", "{kind} {args}");
    }
    assert_clean(root.path());
}

#[test]
fn every_workload_runs_on_the_host() {
    every_workload_on(PlatformKind::Host);
}

#[test]
fn every_workload_runs_in_runc() {
    every_workload_on(PlatformKind::Runc);
}

#[test]
fn every_workload_runs_in_gvisor() {
    every_workload_on(PlatformKind::Gvisor);
}

#[test]
fn a_workload_runs_in_a_microvm() {
    let _guard = serial();
    let root = work_root();
    let env = env(root.path());
    let (out, exit) =
        run_to_end(PlatformKind::Microvm, "file-create --files 200 --rounds 2 --report-every 100ms", &env, Duration::from_secs(300));
    assert_eq!(exit, "exit status 0");
    let t = total(&out).unwrap_or_else(|| panic!("no throughput from the microVM; console:\n{out}"));
    assert_eq!(t.ops, 400);
    assert!(out.lines().any(|l| matches!(Line::parse(l), Some(Line::Interval(_)))) || t.seconds < 0.1, "{out}");
    assert_clean(root.path());
}

/// Interval lines the instance's output delivers within `window`.
fn lines_within(rx: &std::sync::mpsc::Receiver<String>, window: Duration) -> usize {
    let deadline = Instant::now() + window;
    let mut n = 0;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if matches!(Line::parse(&line), Some(Line::Interval(_))) => n += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    n
}

/// The stress experiment's baseline windows pause the trashers: a paused
/// instance does no work at all, and goes on where it was when resumed.
#[test]
fn a_paused_workload_does_no_work_on_any_platform() {
    let _guard = serial();
    let root = work_root();
    let env = env(root.path());
    for kind in [PlatformKind::Host, PlatformKind::Runc, PlatformKind::Gvisor, PlatformKind::Microvm] {
        let args = "file-create --files 100 --duration 5m --report-every 100ms";
        let spec =
            InstanceSpec { name: "paused".into(), workload: shlex::split(args).unwrap(), output: Output::Capture, ..Default::default() };
        let mut instance = kind.create(&spec, &env).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let output = instance.take_output().expect("output captured");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(output)).map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        instance.start().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while lines_within(&rx, Duration::from_millis(500)) == 0 {
            assert!(Instant::now() < deadline, "{kind}: the workload never reported");
        }
        instance.pause().unwrap_or_else(|e| panic!("{kind}: {e}"));
        lines_within(&rx, Duration::from_millis(500)); // what was on its way before the pause
        assert_eq!(lines_within(&rx, Duration::from_secs(2)), 0, "{kind}: a paused workload reported progress");
        instance.resume().unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(lines_within(&rx, Duration::from_secs(5)) > 0, "{kind}: the resumed workload did not go on");
        assert_eq!(instance.try_wait(), None, "{kind}: pausing ended the workload");
        instance.stop();
    }
    assert_clean(root.path());
}

#[test]
fn failing_and_never_started_workloads_leave_nothing() {
    let _guard = serial();
    let root = work_root();
    let env = env(root.path());
    for kind in [PlatformKind::Host, PlatformKind::Runc, PlatformKind::Gvisor, PlatformKind::Microvm] {
        // Fails at once: an impossible size.
        let (out, exit) = run_to_end(kind, "mem --size 0", &env, Duration::from_secs(300));
        assert!(total(&out).is_none(), "{kind}: {out}");
        // How the workload ended, and why.
        assert!(exit.starts_with("exit status 1: ") && exit.contains("--size"), "{kind}: {exit}");
        // Created (held), never started, dropped.
        let spec = InstanceSpec { name: "held".into(), workload: vec!["mem".into()], ..InstanceSpec::default() };
        let held = kind.create(&spec, &env).unwrap();
        assert!(!held.pids().is_empty(), "{kind}: {}", held.describe());
        assert!(held.pids().iter().all(|&p| lockscope_proc::procfs::process_alive(p)), "{kind}: held processes exist");
        drop(held);
        assert_clean(root.path());
    }
}

#[test]
fn a_missing_runtime_is_reported_not_crashed_on() {
    let _guard = serial();
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(LOCKSCOPE)
        .env("PATH", empty.path())
        .args(["record", "-o"])
        .arg(empty.path().join("t"))
        .args(["--workload", "a=runc:mem", "--duration", "1s"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("platform runc is not usable here") && err.contains("apt-get install runc"), "{err}");
    let out = Command::new(LOCKSCOPE).env("PATH", empty.path()).args(["doctor", "--format", "json"]).output().unwrap();
    let doctor: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doctor["platforms"]["runsc"], Value::Null, "keys are platform names");
    assert_eq!(doctor["platforms"]["gvisor"]["usable"], false, "{doctor}");
    assert_eq!(doctor["platforms"]["host"]["usable"], true, "{doctor}");
}

#[test]
fn record_selects_containers_without_their_runtime() {
    let _guard = serial();
    let root = work_root();
    let trace = root.path().join("runc.trace");
    let w = "runc:file-create --files 300 --duration 3s";
    let out = Command::new(LOCKSCOPE)
        .args(["record", "--mode", "contention", "--work-dir"])
        .arg(root.path().join("work"))
        .arg("-o")
        .arg(&trace)
        .args(["--workload", &format!("a={w}"), "--workload", &format!("b={w}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(trace.join("trace.json")).unwrap()).unwrap();
    for w in meta["workloads"].as_array().unwrap() {
        assert_eq!(w["selector"]["kind"], "platform", "{w}");
        assert_eq!(w["selector"]["platform"], "runc", "{w}");
        // The container's init became the workload: one process, not runc's.
        assert_eq!(w["pids"].as_array().unwrap().len(), 1, "{w}");
        assert!(w["run_time_ns"].as_u64().unwrap() > 2_000_000_000, "{w}");
    }
    let report = Command::new(LOCKSCOPE).args(["report", "--format", "json"]).arg(&trace).output().unwrap();
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert!(report["shared_locks"].as_u64().unwrap() >= 1, "two containers on one ext4 share locks: {report}");
    assert_clean(&root.path().join("work"));
}

/// A root file system of busybox alone (busybox-static), in `root`.
fn busybox_rootfs(root: &Path) -> PathBuf {
    let rootfs = root.join("rootfs");
    for d in ["bin", "tmp", "proc", "dev", "sys", "etc", "work"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    std::fs::write(rootfs.join("etc/os-release"), "NAME=\"a root file system of the user\"\n").unwrap();
    rootfs
}

/// A program in a root file system of the user's runs in it as it is: its
/// files, not the host's /usr.
#[test]
fn a_program_runs_in_the_user_s_root_file_system_on_runc_and_gvisor() {
    let _guard = serial();
    let root = work_root();
    let rootfs = busybox_rootfs(root.path());
    let work = root.path().join("work");
    for kind in [PlatformKind::Runc, PlatformKind::Gvisor] {
        let spec = InstanceSpec {
            name: "user-rootfs".into(),
            workload: ["command", "--", "/bin/sh", "-c", ". /etc/os-release; echo $NAME; test -e /usr/bin/python3 || echo no host /usr"]
                .map(String::from)
                .to_vec(),
            output: Output::Capture,
            user_root: Some(UserRoot::Rootfs(rootfs.clone())),
            ..InstanceSpec::default()
        };
        let (out, exit) = run_spec_to_end(kind, &spec, &env(&work), Duration::from_secs(60));
        assert_eq!(out, "a root file system of the user\nno host /usr\n", "{kind}");
        assert!(exit.contains("status is unknown"), "{kind}: {exit}");
        let refused = PlatformKind::Host.create(&spec, &env(&work)).err().map(|e| e.to_string());
        assert_eq!(refused.as_deref(), Some("--rootfs is for runc and gvisor, not host"));
    }
    assert_clean(&work);
}

/// An OCI bundle of the user's runs its own process (arguments,
/// environment, working directory) in its root file system, or the program
/// named instead with the bundle's environment.
#[test]
fn an_oci_bundle_of_the_user_s_runs_its_own_process_on_runc_and_gvisor() {
    let _guard = serial();
    let root = work_root();
    let bundle = root.path().join("bundle");
    let rootfs = busybox_rootfs(&bundle);
    std::fs::create_dir(rootfs.join("srv")).unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "root": { "path": "rootfs" },
        "process": { "args": ["/bin/sh", "-c", "echo $GREETING from $PWD"], "env": ["PATH=/bin", "GREETING=hello"], "cwd": "/srv" },
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let work = root.path().join("work");
    for kind in [PlatformKind::Runc, PlatformKind::Gvisor] {
        let placed = lockscope_platform::parse_placed_workload(&format!("{kind}:--bundle {}", bundle.display())).unwrap();
        let spec = InstanceSpec {
            name: "user-bundle".into(),
            workload: placed.workload,
            output: Output::Capture,
            user_root: placed.user_root,
            ..InstanceSpec::default()
        };
        let (out, _) = run_spec_to_end(kind, &spec, &env(&work), Duration::from_secs(60));
        assert_eq!(out, "hello from /srv\n", "{kind}");
        let placed = lockscope_platform::parse_placed_workload(&format!(
            "{kind}:--bundle {} -- /bin/sh -c 'echo $GREETING again'",
            bundle.display()
        ))
        .unwrap();
        let spec = InstanceSpec { workload: placed.workload, ..spec };
        let (out, _) = run_spec_to_end(kind, &spec, &env(&work), Duration::from_secs(60));
        assert_eq!(out, "hello again\n", "{kind}");
    }
    assert_clean(&work);
}

/// A Podman container and its image, removed when dropped.
struct PodmanContainer {
    name: String,
    image: String,
}

impl PodmanContainer {
    /// An image imported from a root file system of busybox alone, and a
    /// container of it running `script` in its shell, detached.
    fn run(root: &Path, name: &str, script: &str) -> PodmanContainer {
        let rootfs = busybox_rootfs(root);
        let tarball = root.join("rootfs.tar");
        let tar = Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tarball).arg(".").status().unwrap();
        assert!(tar.success());
        let container = PodmanContainer { name: name.to_owned(), image: format!("localhost/{name}:busybox") };
        let podman = |args: &[&str]| {
            let out = Command::new("podman").args(args).output().expect("podman (apt-get install podman)");
            assert!(out.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        podman(&["import", &tarball.display().to_string(), &container.image]);
        // Limits this machine grants: podman's defaults for open files and
        // processes exceed its hard limits, and runc then fails to start.
        let limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];
        // runc, which setup.sh installs (podman would take crun if that were installed too).
        let run = [
            &["--runtime", "runc", "run", "--detach", "--name", name, "--network", "none"][..],
            &limits,
            &[&container.image, "/bin/sh", "-c", script],
        ];
        podman(&run.concat());
        container
    }
}

impl Drop for PodmanContainer {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rm", "--force", &self.name]).output();
        let _ = Command::new("podman").args(["rmi", "--force", &self.image]).output();
    }
}

/// A container that Podman runs, from an image built here from a root file
/// system, recorded by its name: through its cgroup, every process in it.
#[test]
fn a_podman_container_is_recorded_by_its_name() {
    let _guard = serial();
    let root = work_root();
    // Two shells creating and deleting files in one directory contend for it.
    let churn = "while :; do for i in 1 2 3 4 5 6 7 8; do echo x > /tmp/f$$-$i; done; rm -f /tmp/f$$-*; done";
    let _container = PodmanContainer::run(root.path(), "lockscope-test-churn", &format!("({churn}) & ({churn})"));
    let trace = root.path().join("podman.trace");
    let out = Command::new(LOCKSCOPE)
        .args(["record", "--mode", "contention", "--duration", "3s", "--container", "c=lockscope-test-churn", "-o"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(trace.join("trace.json")).unwrap()).unwrap();
    let selector = &meta["workloads"][0]["selector"];
    assert_eq!(selector["kind"], "container", "{selector}");
    assert_eq!(selector["runtime"], "podman", "{selector}");
    assert_eq!(selector["container"], "lockscope-test-churn", "{selector}");
    let report = Command::new(LOCKSCOPE).args(["report", "--format", "json"]).arg(&trace).output().unwrap();
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    let locks = report["workloads"][0]["locks"].as_u64().unwrap_or(0);
    assert!(locks >= 1, "the container's shells contend in its directory: {report:#}");
}

/// Two OpenCV clips transcoded in two runc containers meet in the
/// scheduler's runqueue locks (OpenCV's threads wake each other across CPUs).
#[test]
fn an_application_pair_in_runc_shares_locks() {
    let _guard = serial();
    let root = work_root();
    let trace = root.path().join("apps.trace");
    let w = "runc:video-processing --duration 4s";
    let out = Command::new(LOCKSCOPE)
        .args(["record", "--mode", "contention", "--work-dir"])
        .arg(root.path().join("work"))
        .arg("-o")
        .arg(&trace)
        .args(["--workload", &format!("a={w}"), "--workload", &format!("b={w}")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("exit status 0").count(), 2, "both ran to their end: {stderr}");
    let report = Command::new(LOCKSCOPE).args(["report", "--format", "json"]).arg(&trace).output().unwrap();
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert!(report["shared_locks"].as_u64().unwrap() >= 1, "{report:#}");
    assert_clean(&root.path().join("work"));
}

/// `lockscope stress ARGS` working under `root`/work, writing to `root`/out.
fn stress(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(LOCKSCOPE);
    command.arg("stress").args(args).arg("--work-dir").arg(root.join("work")).arg("-o").arg(root.join("out"));
    command
}

#[test]
fn stress_alternates_baseline_and_stressed_windows_and_draws_the_series() {
    let _guard = serial();
    let root = work_root();
    let out_dir = root.path().join("out");
    let out = stress(
        root.path(),
        &[
            ["--platform", "host", "--worker", "file-create --files 300", "--trasher", "trasher --target fs"].as_slice(),
            &["--trashers", "2", "--cycles", "2", "--runs", "1", "--window", "1200ms", "--warmup", "1s", "--sample", "300ms"],
            &["--record", "--fs", "work-dir"],
        ]
        .concat(),
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The work directory's own file system: said to drift where it does.
    let unjournaled = lockscope_experiments::scratch_fs::unjournaled_ext4(root.path()).is_some();
    assert_eq!(stderr.contains("is on ext4 without a journal"), unjournaled, "{stderr}");
    assert!(!stderr.contains("a private ext4 file system"), "{stderr}");
    // Not a terminal: a line each time a window begins, not one per sample.
    let progress: Vec<&str> = stderr.lines().filter_map(|l| l.strip_prefix("host run 1/1: ")).collect();
    let trashers_per_window = [0, 1, 0, 1, 0, 2, 0, 2, 0];
    let expected: Vec<String> = std::iter::once("warm-up".to_owned())
        .chain(trashers_per_window.iter().enumerate().map(|(i, k)| format!("window {}/9, {k} trasher(s)", i + 1)))
        .collect();
    assert_eq!(progress, expected, "{stderr}");
    // Every window holds whole samples, taken with its trashers running.
    let csv = std::fs::read_to_string(out_dir.join("stress.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    for (w, &k) in trashers_per_window.iter().enumerate() {
        let inside: Vec<&Vec<&str>> = rows.iter().filter(|r| r[3] == w.to_string()).collect();
        assert!(!inside.is_empty() && inside.iter().all(|r| r[4] == k.to_string()), "window {w}: {inside:?}\n{csv}");
    }
    let result: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("stress.json")).unwrap()).unwrap();
    let series = &result["series"][0];
    assert!(series["baseline"].as_f64().unwrap() > 0.0, "{series}");
    assert_eq!(series["windows"].as_array().unwrap().len(), 9);
    let levels = series["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2, "{series}");
    for level in levels {
        let (lo, median, hi) = (level["ci_low"].as_f64().unwrap(), level["slowdown"].as_f64().unwrap(), level["ci_high"].as_f64().unwrap());
        assert!(lo <= median && median <= hi && level["windows"] == 2, "{level}");
        // Two windows make a 50% interval: too little to claim anything, whatever it holds.
        assert!(level["coverage"].as_f64().unwrap() < 0.95 && level["interference"] == false, "{level}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 trasher(s): ") && stdout.contains(" over 2 windows (a 50% interval within one run"), "{stdout}");
    let svg = std::fs::read_to_string(out_dir.join("stress.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>") && svg.contains("<polyline"), "a drawn SVG");
    assert!(svg.contains("host (baseline"), "the legend names the platform");
    let png = std::fs::read(out_dir.join("stress.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 960, "IHDR width");
    // --record: the worker and both trashers, each followed from its start, in one trace.
    let report = Command::new(LOCKSCOPE).args(["report", "--format", "json"]).arg(out_dir.join("stress.trace")).output().unwrap();
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    let names: Vec<&str> = report["workloads"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["worker-host-1", "trasher1-host-1", "trasher2-host-1"]);
    assert!(report["shared_locks"].as_u64().unwrap() >= 1, "the worker and the fs trashers share file-system locks: {report}");
    // The pair's score: the worker's time lost to both trashers, as the trace's report has it.
    let to_trashers: f64 = report["exposures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["waiter"] == "worker-host-1" && e["holder"].as_str().unwrap().starts_with("trasher"))
        .map(|e| e["exposure"].as_f64().unwrap())
        .sum();
    let said = format!("the worker lost {:.4}% of its run time waiting on locks its trashers held", 100.0 * to_trashers);
    assert!(stdout.contains(&said), "{said}\n{stdout}");
    assert_clean(&root.path().join("work"));
}

/// `--control`: a lock-free workload in windows of its own beside each of
/// the first trasher's, on its CPU; its slowdown and the trasher's beyond
/// it, cycle by cycle, are measured and said, and the recording follows it.
#[test]
fn stress_beside_a_control_measures_it_in_windows_of_its_own() {
    let _guard = serial();
    let root = work_root();
    let out_dir = root.path().join("out");
    let out = stress(
        root.path(),
        &[
            ["--worker", "mem --size 1m --total 64m", "--trasher", "trasher --target mm", "--control", "trasher --target memory"]
                .as_slice(),
            &["--trashers", "1", "--cycles", "2", "--runs", "2", "--window", "1s", "--warmup", "1s", "--sample", "250ms", "--record"],
        ]
        .concat(),
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let beside = ["0 trasher(s)", "1 trasher(s)", "0 trasher(s)", "the control", "0 trasher(s)"];
    let per_window: Vec<&str> = beside.iter().chain(beside[1..].iter()).copied().collect();
    let expected: Vec<String> = std::iter::once("warm-up".to_owned())
        .chain(per_window.iter().enumerate().map(|(i, what)| format!("window {}/9, {what}", i + 1)))
        .collect();
    for run in 1..=2 {
        let progress: Vec<&str> = stderr.lines().filter_map(|l| l.strip_prefix(&format!("host run {run}/2: "))).collect();
        assert_eq!(progress, expected, "{stderr}");
    }
    // The control's windows hold samples marked as its, with no trasher running.
    let csv = std::fs::read_to_string(out_dir.join("stress.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let control_rows: Vec<&Vec<&str>> = rows.iter().filter(|r| r[5] == "1").collect();
    assert!(!control_rows.is_empty() && control_rows.iter().all(|r| r[4] == "0" && ["3", "7"].contains(&r[3])), "{csv}");
    let result: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("stress.json")).unwrap()).unwrap();
    assert_eq!(result["control"], "trasher --target memory");
    let control = &result["series"][0]["control"];
    assert_eq!((control["runs"].as_u64(), control["windows"].as_u64()), (Some(2), Some(4)), "{control}");
    assert_eq!((control["beyond"]["runs"].as_u64(), control["beyond"]["windows"].as_u64()), (Some(2), Some(4)), "{control}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("  the control (trasher --target memory): ") && stdout.contains("  1 trasher beyond the control, cycle by cycle: "),
        "{stdout}"
    );
    // Recorded: the control beside the worker and its trasher, each run.
    let report = Command::new(LOCKSCOPE).args(["report", "--format", "json"]).arg(out_dir.join("stress.trace")).output().unwrap();
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    let workloads = report["workloads"].as_array().unwrap();
    let names: Vec<&str> = workloads.iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["worker-host-1", "trasher1-host-1", "control-host-1", "worker-host-2", "trasher1-host-2", "control-host-2"]);
    for control in workloads.iter().filter(|w| w["name"].as_str().unwrap().starts_with("control")) {
        assert!(control["run_time_secs"].as_f64().unwrap() > 1.0, "the control ran: {control}");
    }
    assert_clean(&root.path().join("work"));
}

/// By default the instances run on an ext4 file system of their own,
/// mounted under the work directory while the experiment runs and gone after.
/// Two runs: the slowdown's interval is over the runs.
#[test]
fn stress_on_a_private_file_system_removes_it_after() {
    let _guard = serial();
    let root = work_root();
    let work = root.path().join("work");
    let args = ["--worker", "file-create --files 300", "--trashers", "1", "--cycles", "2", "--runs", "2"];
    let child = stress(root.path(), &[args.as_slice(), &["--window", "1s", "--warmup", "1s", "--sample", "250ms"]].concat())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mount_point, image) =
        (work.join(format!("stress-{}", child.id())), PathBuf::from(format!("/dev/shm/lockscope-{}-stress.img", child.id())));
    let mounted = || lockscope_proc::procfs::mounts().unwrap().iter().any(|m| m.dir == mount_point);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mounted() {
        assert!(Instant::now() < deadline, "{} never mounted", mount_point.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!(
        "note: the instances run on a private ext4 file system in memory, a new one each run, mounted at {}",
        mount_point.display()
    )));
    let result: Value = serde_json::from_str(&std::fs::read_to_string(root.path().join("out/stress.json")).unwrap()).unwrap();
    assert!(result["series"][0]["baseline"].as_f64().unwrap() > 0.0, "{result}");
    let level = &result["series"][0]["levels"][0];
    assert_eq!((level["runs"].as_u64(), level["windows"].as_u64()), (Some(2), Some(4)), "{level}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(" over 2 runs (4 windows)"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!mounted() && !mount_point.exists(), "{} left behind", mount_point.display());
    assert!(!image.exists(), "{} left behind", image.display());
    assert_clean(&work);
}

#[test]
fn ctrl_c_during_stress_in_containers_removes_everything() {
    let _guard = serial();
    let root = work_root();
    let out_dir = root.path().join("out");
    let child = stress(
        root.path(),
        &[
            "--platform",
            "runc",
            "--worker",
            "file-create --files 300",
            "--trashers",
            "3",
            "--window",
            "2s",
            "--warmup",
            "1s",
            "--sample",
            "500ms",
        ],
    )
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // The worker and one trasher are running by now.
    std::thread::sleep(Duration::from_millis(3500));
    assert!(leftovers(root.path()).iter().any(|l| l.starts_with("runc container")), "containers running mid-experiment");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(std::fs::read_to_string(out_dir.join("stress.csv")).unwrap().lines().count() > 2, "what was measured is kept");
    assert_clean(&root.path().join("work"));
}

/// The memory limit of the cgroup a process is in (v2 memory.max, else v1's memory controller).
fn memory_limit_of(pid: u32) -> Option<u64> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (dir, file) = if v2 {
        (format!("/sys/fs/cgroup{}", cgroups.lines().find_map(|l| l.strip_prefix("0::"))?), "memory.max")
    } else {
        (
            format!("/sys/fs/cgroup/memory{}", cgroups.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p))?),
            "memory.limit_in_bytes",
        )
    };
    std::fs::read_to_string(Path::new(&dir).join(file)).ok()?.trim().parse().ok()
}

#[test]
fn cpus_and_memory_limits_are_applied_before_the_workload_runs() {
    let _guard = serial();
    let root = work_root();
    let env = env(root.path());
    let cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    for kind in [PlatformKind::Host, PlatformKind::Runc] {
        let spec = InstanceSpec {
            name: "placed".into(),
            workload: vec!["mem".into()],
            cpus: Some(vec![cpu]),
            memory_limit: Some(256 << 20),
            ..InstanceSpec::default()
        };
        let held = kind.create(&spec, &env).unwrap();
        let pid = held.pids()[0];
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let allowed = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim();
        assert_eq!(allowed, cpu.to_string(), "{kind}");
        assert_eq!(memory_limit_of(pid), Some(256 << 20), "{kind}");
        drop(held);
    }
    assert_clean(root.path());
}

#[test]
fn ctrl_c_during_a_recording_of_sandboxes_removes_them() {
    let _guard = serial();
    let root = work_root();
    let w = "gvisor:mem --size 1m --total 32m --duration 60s";
    let child = Command::new(LOCKSCOPE)
        .args(["record", "--work-dir"])
        .arg(root.path().join("work"))
        .arg("-o")
        .arg(root.path().join("t.trace"))
        .args(["--workload", &format!("a={w}"), "--workload", &format!("b={w}")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(!leftovers(&root.path().join("work")).is_empty(), "sandboxes running mid-recording");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(root.path().join("t.trace/trace.json").is_file(), "the trace is written");
    assert_clean(&root.path().join("work"));
}

/// The calibration ladder on this machine: two workloads creating files in
/// one directory lose throughput to each other and meet in its locks; a
/// trasher that only computes costs the worker nothing and meets it nowhere.
#[test]
fn calibration_ranks_the_ladder_s_ends_as_their_slowdowns_do() {
    let _guard = serial();
    let root = work_root();
    let out = Command::new(LOCKSCOPE)
        .args(["calibrate", "--window", "1s", "--cycles", "6", "--sample", "250ms", "--format", "json", "--work-dir"])
        .arg(root.path().join("work"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rungs = result["rungs"].as_array().unwrap();
    let names: Vec<&str> = rungs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["same-directory", "same-directory-half-time", "same-filesystem", "other-filesystem", "cpu-only"], "{result:#}");
    let (first, last) = (&rungs[0], &rungs[4]);
    let f = |r: &Value, key: &str| r[key].as_f64().unwrap();
    assert!(f(first, "slowdown") > f(last, "slowdown"), "one directory slows the worker more than a computing trasher: {result:#}");
    assert!(first["interference"] == true && f(first, "ci_low") > 0.0, "{first:#}");
    assert!(f(first, "score") < f(last, "score"), "and the score says so: {result:#}");
    assert_eq!(first["ci"][0], first["ci_low"]);
    assert!(result["rho"].is_number(), "{result:#}");
    assert_clean(&root.path().join("work"));
}
