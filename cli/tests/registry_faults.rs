//! A failing registry: a fault-injecting HTTP proxy (written here, over
//! std's TcpListener) in front of the real distribution registry answers
//! 500s, cuts bodies, corrupts bytes and stalls. Idempotent requests are
//! retried with a bounded backoff (and say so); what cannot succeed fails
//! naming what happened, with nothing tagged and `system check` clean.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::registry::Registry;
use support::{Rbuild, Run, run_command};

/// What the proxy does to a matching request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Answers 500 without asking the registry.
    Status500,
    /// Sends the headers and half the body, then closes.
    Cut,
    /// Flips a byte in the body (same length).
    Corrupt,
    /// Sends the headers and half the body, then goes silent.
    Stall,
}

/// A rule: the first `times` requests whose line contains `needle`.
struct Rule {
    needle: String,
    fault: Fault,
    times: usize,
}

/// Request lines seen, with the fault applied to each.
type RequestLog = Arc<Mutex<Vec<(String, Option<Fault>)>>>;

struct FaultProxy {
    port: u16,
    rules: Arc<Mutex<Vec<Rule>>>,
    log: RequestLog,
}

impl FaultProxy {
    fn start(target: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let log: RequestLog = Arc::default();
        let (r, l) = (rules.clone(), log.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (r, l) = (r.clone(), l.clone());
                std::thread::spawn(move || serve(conn, target, &r, &l));
            }
        });
        FaultProxy { port, rules, log }
    }

    fn rule(&self, needle: &str, fault: Fault, times: usize) {
        self.rules.lock().unwrap().push(Rule {
            needle: needle.to_string(),
            fault,
            times,
        });
    }

    fn faults_applied(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, f)| f.is_some())
            .count()
    }
}

/// One request per connection: the request goes on with `Connection:
/// close`, the answer comes back whole, or as the matching fault says.
fn serve(
    mut client: TcpStream,
    target: u16,
    rules: &Mutex<Vec<Rule>>,
    log: &Mutex<Vec<(String, Option<Fault>)>>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let line = text.lines().next().unwrap_or_default().to_string();
    let fault = {
        let mut rules = rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| r.times > 0 && line.contains(&r.needle))
            .map(|r| {
                r.times -= 1;
                r.fault
            })
    };
    log.lock().unwrap().push((line, fault));
    if fault == Some(Fault::Status500) {
        let _ = client.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let request: String = text
        .split("\r\n")
        .filter(|h| !h.to_ascii_lowercase().starts_with("connection:"))
        .take_while(|h| !h.is_empty())
        .map(|h| format!("{h}\r\n"))
        .collect::<String>()
        + "Connection: close\r\n\r\n";
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)) else {
        return;
    };
    if server.write_all(request.as_bytes()).is_err() {
        return;
    }
    let mut response = Vec::new();
    let _ = server.read_to_end(&mut response);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(response.len());
    let (headers, body) = response.split_at(split);
    let headers =
        String::from_utf8_lossy(headers).replace("Connection: keep-alive", "Connection: close");
    let mut body = body.to_vec();
    match fault {
        None | Some(Fault::Status500) => {}
        Some(Fault::Corrupt) => {
            let mid = body.len() / 2;
            if let Some(b) = body.get_mut(mid) {
                *b ^= 0x01;
            }
        }
        Some(Fault::Cut) => body.truncate(body.len() / 2),
        Some(Fault::Stall) => {
            let _ = client.write_all(headers.as_bytes());
            let _ = client.write_all(&body[..body.len() / 2]);
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
    }
    let _ = client.write_all(headers.as_bytes());
    let _ = client.write_all(&body);
    let _ = client.shutdown(Shutdown::Both);
}

/// A registry holding `busybox:1` (pushed by another store), the proxy in
/// front of it, and the manifest's blob digests (config, layer).
fn setup() -> (Registry, FaultProxy, String, String) {
    let reg = Registry::start(None);
    let a = Rbuild::new();
    a.busybox();
    let name = format!("{}/busybox:1", reg.host());
    let r = run(&a, &["tag", "busybox", &name], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&a, &["push", &name], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = reg.stored_manifest("busybox", "1");
    let config = m["config"]["digest"].as_str().unwrap().to_string();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let proxy = FaultProxy::start(reg.port);
    (reg, proxy, config, layer)
}

fn run(rb: &Rbuild, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = rb.private_command(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run_command(c, None)
}

fn pull(proxy: &FaultProxy, env: &[(&str, &str)]) -> (Rbuild, Run) {
    let b = Rbuild::new();
    let r = run(
        &b,
        &["pull", &format!("127.0.0.1:{}/busybox:1", proxy.port)],
        env,
    );
    (b, r)
}

fn assert_clean(b: &Rbuild) {
    let check = run(b, &["system", "check"], &[]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains(": 0 problems"), "{}", check.stdout);
}

fn assert_untagged(b: &Rbuild) {
    let images = run(b, &["images", "-q"], &[]);
    assert_eq!(images.stdout.trim(), "", "nothing may be tagged");
}

/// Regression (issue 13): a registry answering 500 to a blob GET failed
/// the pull at once; docker and skopeo retry idempotent requests.
#[test]
fn pull_retries_500s_on_manifests_blobs_and_says_so() {
    let (_reg, proxy, _config, layer) = setup();
    proxy.rule("/manifests/", Fault::Status500, 1);
    proxy.rule(
        &format!("GET /v2/busybox/blobs/{layer}"),
        Fault::Status500,
        2,
    );
    let (b, r) = pull(&proxy, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("retrying GET"), "{}", r.stderr);
    assert!(r.stderr.contains("answered 500"), "{}", r.stderr);
    assert_eq!(proxy.faults_applied(), 3);
    assert_clean(&b);
}

/// A registry that keeps answering 500 fails the pull after a bounded
/// number of tries, naming the status; nothing is tagged.
#[test]
fn pull_gives_up_on_a_persistent_500_after_bounded_retries() {
    let (_reg, proxy, _config, layer) = setup();
    proxy.rule(
        &format!("GET /v2/busybox/blobs/{layer}"),
        Fault::Status500,
        1000,
    );
    let start = Instant::now();
    let (b, r) = pull(&proxy, &[]);
    assert_ne!(r.code, 0);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "retries must be bounded"
    );
    assert!(r.stderr.contains("answered 500"), "{}", r.stderr);
    assert!(r.stderr.contains("retry 4 of 4"), "{}", r.stderr);
    assert_eq!(proxy.faults_applied(), 5, "one try and four retries");
    assert_untagged(&b);
    assert_clean(&b);
}

/// Regression (issue 13): a body cut mid-transfer read `cannot reach …`
/// (the registry was reached); it is retried, and named when it persists.
#[test]
fn a_cut_body_is_fetched_again_and_named_when_it_persists() {
    let (_reg, proxy, _config, layer) = setup();
    proxy.rule(&format!("GET /v2/busybox/blobs/{layer}"), Fault::Cut, 1);
    let (b, r) = pull(&proxy, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("was cut"), "{}", r.stderr);
    assert_clean(&b);

    proxy.rule(&format!("GET /v2/busybox/blobs/{layer}"), Fault::Cut, 1000);
    let (b, r) = pull(&proxy, &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("was cut after"), "{}", r.stderr);
    assert!(!r.stderr.contains("cannot reach"), "{}", r.stderr);
    assert_untagged(&b);
    assert_clean(&b);
}

/// Bytes that do not match the digest are never stored or tagged.
#[test]
fn a_blob_with_the_wrong_digest_is_refused_and_nothing_is_tagged() {
    let (_reg, proxy, _config, layer) = setup();
    proxy.rule(
        &format!("GET /v2/busybox/blobs/{layer}"),
        Fault::Corrupt,
        1000,
    );
    let (b, r) = pull(&proxy, &[]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("does not match its digest"),
        "{}",
        r.stderr
    );
    assert!(!b.has_blob(&layer), "a corrupt blob must not be stored");
    assert_untagged(&b);
    assert_clean(&b);
}

/// A transfer that stalls is timed out and fetched again instead of
/// hanging the pull.
#[test]
fn a_stalled_transfer_times_out_and_is_retried() {
    let (_reg, proxy, _config, layer) = setup();
    proxy.rule(&format!("GET /v2/busybox/blobs/{layer}"), Fault::Stall, 1);
    let start = Instant::now();
    let (b, r) = pull(&proxy, &[("RBUILD_REGISTRY_READ_TIMEOUT", "1")]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        start.elapsed() < Duration::from_secs(25),
        "the stall was waited out"
    );
    assert!(r.stderr.contains("retrying GET"), "{}", r.stderr);
    assert_clean(&b);
}

/// Regression (issue 13, item 7): a layer damaged on disk was pushed as
/// is (the registry then held bytes that do not match their digest, or
/// refused them with a bare 400). The push fails naming the image, and
/// the registry never gets the blob.
#[test]
fn push_of_an_image_with_a_damaged_layer_fails_naming_it() {
    let reg = Registry::start(None);
    let a = Rbuild::new();
    let name = format!("{}/victim:1", reg.host());
    let tree = a.tree("tree", &[("data", &"payload ".repeat(8192))]);
    let r = run(&a, &["import", support::s(&tree), &name], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = r.stdout.trim().to_string();
    let layer = run(
        &a,
        &["inspect", "-f", "{{index .RootFS.Layers 0}}", &name],
        &[],
    )
    .stdout
    .trim()
    .to_string();
    let blob = support::blob_path(&a.root().join("store-v1"), &layer);
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes.windows(7).position(|w| w == b"payload").unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(&blob, bytes).unwrap();
    let r = run(&a, &["push", &name], &[]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    let short = &id.trim_start_matches("sha256:")[..12];
    assert!(
        r.stderr.contains("cannot push image") && r.stderr.contains(short),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("is corrupt"), "{}", r.stderr);
    assert!(
        !reg.blob_data(&layer).exists(),
        "the registry must not get the blob"
    );
}
