//! End-to-end tests of pull, push, login/logout and FROM pulls against a
//! real registry: the CNCF distribution registry (`docker-registry`
//! Debian package) on 127.0.0.1, a free port and temporary storage,
//! started and stopped by each test. Nothing leaves the machine.

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::registry::{Proxy, Registry, blob_gets};
use support::{Rbuild, Run, tool};

/// Runs rbuild reading none of the user's configuration (Docker
/// credentials, rbuild's user config file).
fn rb_run(rb: &Rbuild, args: &[&str], stdin: Option<&[u8]>) -> Run {
    support::run_command(rb.private_command(args), stdin)
}

/// `rbuild build --progress plain CTX`, whatever happens.
fn build_plain(rb: &Rbuild, ctx: &Path) -> Run {
    rb_run(
        rb,
        &["build", "--progress", "plain", ctx.to_str().unwrap()],
        None,
    )
}

/// `rbuild login -u alice --password-stdin HOST` with `password`.
fn login(rb: &Rbuild, reg: &Registry, password: &[u8]) -> Run {
    rb_run(
        rb,
        &["login", "-u", "alice", "--password-stdin", &reg.host()],
        Some(password),
    )
}

/// Gives `to` the Docker config (credentials) of `from`.
fn copy_docker_config(from: &Rbuild, to: &Rbuild) {
    std::fs::create_dir_all(to.path("docker-config")).unwrap();
    std::fs::copy(
        from.path("docker-config/config.json"),
        to.path("docker-config/config.json"),
    )
    .unwrap();
}

/// Tags `rb`'s busybox as `HOST/repo` of `reg` and pushes it; returns
/// that name.
fn push_busybox(rb: &Rbuild, reg: &Registry, repo: &str) -> String {
    let name = format!("{}/{repo}", reg.host());
    ok(rb, &["tag", "busybox", &name]);
    ok(rb, &["push", &name]);
    name
}

/// The manifest `digest` from `rb`'s store.
fn stored_manifest(rb: &Rbuild, digest: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(support::blob_path(&rb.root().join("store-v1"), digest)).unwrap(),
    )
    .unwrap()
}

fn ok(rb: &Rbuild, args: &[&str]) -> String {
    let r = rb_run(rb, args, None);
    assert_eq!(
        r.code, 0,
        "rbuild {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r.stdout
}

fn fails(rb: &Rbuild, args: &[&str]) -> Run {
    let r = rb_run(rb, args, None);
    assert_ne!(
        r.code, 0,
        "rbuild {args:?} should have failed:\n{}",
        r.stdout
    );
    r
}

/// (image ID, manifest digest) of `image` from `inspect`.
fn ids(rb: &Rbuild, image: &str) -> (String, String) {
    let out = ok(rb, &["inspect", image]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v[0]["Id"].as_str().unwrap().to_string();
    let digests = v[0]["RepoDigests"].as_array().unwrap();
    let digest = digests[0]
        .as_str()
        .unwrap()
        .split('@')
        .nth(1)
        .unwrap()
        .to_string();
    (id, digest)
}

fn blob_count(rb: &Rbuild) -> usize {
    std::fs::read_dir(rb.root().join("store-v1/blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn push_then_pull_into_a_fresh_store_gives_the_same_image_which_runs() {
    let reg = Registry::start(None);
    let a = Rbuild::new();
    a.busybox();
    let name = format!("{}/tools/bb:v1", reg.host());
    ok(&a, &["tag", "busybox", &name]);
    let out = ok(&a, &["push", &name]);
    assert!(
        out.starts_with(&format!(
            "The push refers to repository [{}/tools/bb]\n",
            reg.host()
        )),
        "{out}"
    );
    assert!(out.contains(": Pushed\n"), "{out}");
    let (id, manifest) = ids(&a, &name);
    assert!(
        out.contains(&format!("v1: digest: {manifest} size: ")),
        "{out}"
    );
    // A second push uploads nothing.
    let again = ok(&a, &["push", &name]);
    assert!(again.contains(": Layer already exists\n"), "{again}");
    assert!(!again.contains(": Pushed"), "{again}");

    // Remove it locally, pull it back: same image ID and manifest digest.
    ok(&a, &["rmi", &name, "busybox"]);
    let b = Rbuild::new();
    let out = ok(&b, &["pull", &name]);
    assert!(out.starts_with("v1: Pulling from tools/bb\n"), "{out}");
    assert!(out.contains(": Pull complete\n"), "{out}");
    assert!(out.contains(&format!("Digest: {manifest}\n")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}\n")),
        "{out}"
    );
    assert_eq!(ids(&b, &name), (id.clone(), manifest.clone()));
    assert_eq!(
        ok(&b, &["run", "--rm", &name, "echo", "pulled"]),
        "pulled\n"
    );
    // Pulling again downloads nothing.
    let out = ok(&b, &["pull", &name]);
    assert!(
        out.contains(&format!("Status: Image is up to date for {name}")),
        "{out}"
    );
    // By digest too.
    let by_digest = format!("{}/tools/bb@{manifest}", reg.host());
    let c = Rbuild::new();
    ok(&c, &["pull", &by_digest]);
    assert_eq!(ids(&c, &by_digest).0, id);
}

#[test]
fn pushing_under_another_repository_of_the_same_registry_mounts_blobs() {
    let reg = Registry::start(None);
    let rb = Rbuild::new();
    rb.busybox();
    let first = format!("{}/base:1", reg.host());
    let second = format!("{}/team/app:1", reg.host());
    ok(&rb, &["tag", "busybox", &first]);
    ok(&rb, &["push", &first]);
    ok(&rb, &["tag", "busybox", &second]);
    let out = ok(&rb, &["push", &second]);
    assert!(out.contains(": Mounted from base\n"), "{out}");
}

#[test]
fn from_an_image_not_in_the_store_pulls_it_and_build_push_publishes_the_result() {
    let reg = Registry::start(None);
    let a = Rbuild::new();
    a.busybox();
    let base = push_busybox(&a, &reg, "base");

    let b = Rbuild::new();
    let ctx = b.tree(
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM {base}\nRUN echo built-on-pulled-base > /msg\n"),
        )],
    );
    let app = format!("{}/app:2", reg.host());
    ok(
        &b,
        &["build", "-q", "-t", &app, "--push", ctx.to_str().unwrap()],
    );
    assert!(ok(&b, &["images"]).contains("base"));

    let c = Rbuild::new();
    ok(&c, &["pull", &app]);
    assert_eq!(
        ok(&c, &["run", "--rm", &app, "cat", "/msg"]),
        "built-on-pulled-base\n"
    );

    // --pull re-resolves the tag: a new base pushed under the same tag is
    // used by the next build of a store that has the old one.
    let ctx2 = b.tree(
        "ctx2",
        &[("Dockerfile", &format!("FROM {base}\nRUN cat /new\n"))],
    );
    a.import_tree(
        "fresh:1",
        &[("new", "fresh base\n"), ("bin/placeholder", "")],
    );
    let r = fails(
        &b,
        &["build", "--progress", "plain", ctx2.to_str().unwrap()],
    );
    assert!(r.stderr.contains("/new"), "{}", r.stderr);
    ok(&a, &["tag", "fresh:1", &base]);
    ok(&a, &["push", &base]);
    let new_digest = ids(&a, &base).1;
    let r = rb_run(
        &b,
        &[
            "build",
            "--pull",
            "--progress",
            "plain",
            ctx2.to_str().unwrap(),
        ],
        None,
    );
    // The fresh base has no shell, so RUN fails; what matters is that
    // the planner used the new image.
    assert!(
        r.stderr.contains(&format!("/base:latest@{new_digest}")),
        "{}",
        r.stderr
    );
    assert_eq!(ids(&b, &base).1, new_digest);
}

/// A registry taking Basic auth for alice / s3cret (htpasswd in `dir`).
fn basic_auth_registry(dir: &Path) -> Registry {
    let htpasswd = dir.join("htpasswd");
    let hash = tool(
        "python3",
        &[
            "-W",
            "ignore",
            "-c",
            "import crypt; print(crypt.crypt('s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH)))",
        ],
    );
    std::fs::write(&htpasswd, format!("alice:{}\n", hash.trim())).unwrap();
    Registry::start(Some(&format!(
        "  htpasswd:\n    realm: test\n    path: {}",
        htpasswd.display()
    )))
}

/// Regression: each blob request answered 401 looked the credentials up
/// again, running the credential helper once per blob in parallel.
#[test]
fn a_credential_helper_runs_once_per_registry_for_a_whole_push() {
    let dir = tempfile::tempdir().unwrap();
    let reg = basic_auth_registry(dir.path());
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = dir.path().join("calls");
    let helper = bin.join("docker-credential-rbtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\necho \"$1\" >> {}\ncat >/dev/null\necho '{{\"Username\":\"alice\",\"Secret\":\"s3cret\"}}'\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let rb = Rbuild::new();
    rb.busybox();
    std::fs::create_dir_all(rb.path("docker-config")).unwrap();
    std::fs::write(
        rb.path("docker-config/config.json"),
        r#"{"credsStore":"rbtest"}"#,
    )
    .unwrap();
    let name = format!("{}/helped:1", reg.host());
    ok(&rb, &["tag", "busybox", &name]);
    let mut push = rb.private_command(&["push", &name]);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    push.env("PATH", path);
    let r = support::run_command(push, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "get\n");
}

#[test]
fn basic_auth_refuses_anonymous_push_and_accepts_after_login() {
    let dir = tempfile::tempdir().unwrap();
    let reg = basic_auth_registry(dir.path());
    let rb = Rbuild::new();
    rb.busybox();
    let name = format!("{}/private:1", reg.host());
    ok(&rb, &["tag", "busybox", &name]);
    let r = fails(&rb, &["push", &name]);
    assert!(r.stderr.contains("authentication required"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("hint: run `rbuild login {}`", reg.host())),
        "{}",
        r.stderr
    );
    let r = login(&rb, &reg, b"wrong\n");
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("incorrect username or password"),
        "{}",
        r.stderr
    );
    let r = login(&rb, &reg, b"s3cret\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "Login Succeeded\n");
    let config = std::fs::read_to_string(rb.path("docker-config/config.json")).unwrap();
    assert!(config.contains(&reg.host()), "{config}");
    ok(&rb, &["push", &name]);
    let fresh = Rbuild::new();
    // Another store, same Docker config: the pull authenticates too.
    let r = rb_run(&fresh, &["pull", &name], None);
    assert_ne!(r.code, 0, "the fresh store has its own docker config dir");
    assert!(r.stderr.contains("authentication required"), "{}", r.stderr);
    copy_docker_config(&rb, &fresh);
    ok(&fresh, &["pull", &name]);
    assert_eq!(
        ok(&rb, &["logout", &reg.host()]),
        format!("Removing login credentials for {}\n", reg.host())
    );
    assert!(
        fails(&rb, &["push", &name])
            .stderr
            .contains("authentication required")
    );
}

#[test]
fn a_blob_corrupted_in_the_registry_is_refused_and_nothing_enters_the_store() {
    let reg = Registry::start(None);
    let a = Rbuild::new();
    a.busybox();
    let name = push_busybox(&a, &reg, "bb:1");
    let manifest = ids(&a, &name).1;
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reg.blob_data(&manifest)).unwrap()).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let data = reg.blob_data(&layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let b = Rbuild::new();
    let r = fails(&b, &["pull", &name]);
    assert!(
        r.stderr.contains(&format!(
            "blob {layer} from {}/bb does not match its digest",
            reg.host()
        )),
        "{}",
        r.stderr
    );
    assert!(
        !b.root()
            .join("store-v1/blobs/sha256")
            .join(&layer[7..])
            .exists()
    );
    assert!(!ok(&b, &["images"]).contains("bb"));
    // Only the (valid) config may have been stored; no temporary files.
    assert!(blob_count(&b) <= 1);
    let tmp = b.root().join("store-v1/tmp");
    let leftovers: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "scratch left in the store: {leftovers:?}"
    );
    let check = ok(&b, &["system", "check"]);
    assert!(check.contains(" 0 problems"), "{check}");
}

#[test]
fn skopeo_reads_what_rbuild_pushes_and_rbuild_pulls_what_skopeo_pushes() {
    let reg = Registry::start(None);
    let rb = Rbuild::new();
    rb.busybox();
    let name = push_busybox(&rb, &reg, "interop:1");
    let oci = rb.path("oci");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{name}"),
            &format!("oci:{}:x", oci.display()),
        ],
    );
    // And back under another name, pushed by skopeo.
    let theirs = format!("{}/from-skopeo:1", reg.host());
    tool(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:x", oci.display()),
            &format!("docker://{theirs}"),
        ],
    );
    let fresh = Rbuild::new();
    ok(&fresh, &["pull", &theirs]);
    assert_eq!(ok(&fresh, &["run", "--rm", &theirs, "echo", "ok"]), "ok\n");

    // A docker-archive made by `rbuild save`, pushed by skopeo (Docker v2
    // schema 2 manifest, gzip layers). A registry of its own: on the first
    // one skopeo would reuse the uncompressed layer it knows is there yet
    // label it gzip (see the report).
    let archive = rb.path("bb.tar");
    ok(&rb, &["save", "-o", archive.to_str().unwrap(), "busybox"]);
    let reg2 = Registry::start(None);
    let v2 = format!("{}/docker-v2:1", reg2.host());
    tool(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-compress",
            &format!("docker-archive:{}", archive.display()),
            &format!("docker://{v2}"),
        ],
    );
    let other = Rbuild::new();
    ok(&other, &["pull", &v2]);
    assert_eq!(ok(&other, &["run", "--rm", &v2, "echo", "v2"]), "v2\n");
}

/// Base64url without padding, as JWTs use it.
fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Standard base64 (padded) decoding of a PEM body, for the `x5c` header.
fn b64_decode(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        bits = (bits << 6) | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    out
}

/// A test token server (the distribution token spec) on loopback: checks
/// Basic credentials `alice:s3cret`, signs RS256 JWTs with a self-signed
/// certificate's key (the certificate goes in `x5c` and in the registry's
/// `rootcertbundle`), and logs every request's query and user.
struct TokenIssuer {
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    cert: PathBuf,
}

impl TokenIssuer {
    const SERVICE: &'static str = "rbuild-test-registry";
    const ISSUER: &'static str = "rbuild-test-issuer";

    fn start(dir: &std::path::Path) -> TokenIssuer {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        tool(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=rbuild test issuer",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
            ],
        );
        let pem = std::fs::read_to_string(&cert).unwrap();
        let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let x5c = {
            // Re-encode as standard base64 (x5c is not base64url).
            let raw = b64_decode(&der);
            b64url(&raw).replace('-', "+").replace('_', "/")
        };
        let x5c = format!("{x5c}{}", "=".repeat((4 - x5c.len() % 4) % 4));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread_log = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = serve_token(stream, &key, &x5c, &thread_log);
            }
        });
        TokenIssuer { port, log, cert }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn url_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Answers one `GET /token?service=…&scope=…` request.
fn serve_token(
    mut stream: TcpStream,
    key: &std::path::Path,
    x5c: &str,
    log: &std::sync::Mutex<Vec<String>>,
) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Write};
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(v.trim().to_string());
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut scopes = Vec::new();
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("scope=") {
            scopes.push(url_decode(v));
        }
    }
    let user = match authorization.as_deref() {
        None => None,
        Some(a) => {
            let decoded = b64_decode(a.strip_prefix("Basic ").unwrap_or(""));
            if decoded != b"alice:s3cret" {
                log.lock()
                    .unwrap()
                    .push(format!("refused {}", url_decode(query)));
                let body = r#"{"details":"incorrect username or password"}"#;
                return write!(
                    stream,
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
            Some("alice")
        }
    };
    log.lock().unwrap().push(format!(
        "{} {}",
        user.unwrap_or("anonymous"),
        url_decode(query)
    ));
    // Anonymous users get a token with no access (as Docker Hub does for
    // a private repository); alice gets what she asks for.
    let access: Vec<serde_json::Value> = if user.is_some() {
        scopes
            .iter()
            .flat_map(|s| s.split(' '))
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                let (t, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({
                    "type": t, "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }))
            })
            .collect()
    } else {
        Vec::new()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": TokenIssuer::ISSUER, "sub": user.unwrap_or(""),
        "aud": TokenIssuer::SERVICE, "exp": now + 300, "nbf": now - 10,
        "iat": now, "jti": format!("{now}-{}", scopes.len()), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())?;
    let signature = child.wait_with_output()?.stdout;
    let token = format!("{signing_input}.{}", b64url(&signature));
    let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn token_auth_goes_through_the_bearer_flow_for_login_push_and_pull() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TokenIssuer::start(dir.path());
    let reg = Registry::start(Some(&format!(
        "  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}",
        issuer.realm(),
        TokenIssuer::SERVICE,
        TokenIssuer::ISSUER,
        issuer.cert.display()
    )));
    let rb = Rbuild::new();
    rb.busybox();
    let name = format!("{}/team/app:1", reg.host());
    // Four blobs (config and three layers), pushed in parallel.
    let ctx = rb.tree(
        "ctx",
        &[
            ("Dockerfile", "FROM busybox\nCOPY a /a\nCOPY b /b\n"),
            ("a", "a\n"),
            ("b", "b\n"),
        ],
    );
    ok(&rb, &["build", "-q", "-t", &name, ctx.to_str().unwrap()]);

    // Anonymous: the issuer hands out a token without access, the
    // registry still refuses.
    let r = fails(&rb, &["push", &name]);
    assert!(r.stderr.contains("authentication required"), "{}", r.stderr);
    assert!(
        issuer
            .log()
            .iter()
            .any(|l| l.starts_with("anonymous ") && l.contains("scope=repository")),
        "{:?}",
        issuer.log()
    );

    // A wrong password is refused by the token server, through login.
    let r = login(&rb, &reg, b"wrong\n");
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("incorrect username or password"),
        "{}",
        r.stderr
    );
    assert!(issuer.log().iter().any(|l| l.starts_with("refused ")));

    let before = issuer.log().len();
    let r = login(&rb, &reg, b"s3cret\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "Login Succeeded\n");
    let log = issuer.log();
    assert!(
        log[before..]
            .iter()
            .any(|l| l.starts_with("alice ") && l.contains("service=rbuild-test-registry")),
        "login must get a token: {log:?}"
    );

    let before = issuer.log().len();
    let out = ok(&rb, &["push", &name]);
    assert_eq!(out.matches(": Pushed\n").count(), 3, "{out}");
    let log = issuer.log();
    assert!(
        log[before..]
            .iter()
            .any(|l| l.starts_with("alice ") && l.contains("scope=repository:team/app:pull,push")),
        "push asks for pull,push on team/app: {log:?}"
    );
    // The parallel uploads share one token per scope: the issuer is
    // asked once for each.
    let mut asked = log[before..].to_vec();
    asked.sort();
    let before_dedup = asked.len();
    asked.dedup();
    assert_eq!(asked.len(), before_dedup, "one token per scope: {log:?}");
    let (id, _) = ids(&rb, &name);

    let fresh = Rbuild::new();
    copy_docker_config(&rb, &fresh);
    let before = issuer.log().len();
    ok(&fresh, &["pull", &name]);
    let log = issuer.log();
    assert!(
        log[before..]
            .iter()
            .any(|l| l.starts_with("alice ") && l.contains("scope=repository:team/app:pull&")),
        "pull asks for pull only: {log:?}"
    );
    assert_eq!(ids(&fresh, &name).0, id);
    assert_eq!(ok(&fresh, &["run", "--rm", &name, "echo", "hi"]), "hi\n");
}

#[test]
fn output_type_image_push_true_pushes_every_name() {
    let reg = Registry::start(None);
    let a = Rbuild::new();
    a.busybox();
    let ctx = a.tree(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo via-output > /msg\n")],
    );
    let x1 = format!("{}/x:1", reg.host());
    let y2 = format!("{}/y:2", reg.host());
    let out = format!("type=image,\"name={x1},{y2}\",push=true");
    ok(&a, &["build", "-q", "-o", &out, ctx.to_str().unwrap()]);
    for name in [&x1, &y2] {
        let fresh = Rbuild::new();
        ok(&fresh, &["pull", name]);
        assert_eq!(
            ok(&fresh, &["run", "--rm", name, "cat", "/msg"]),
            "via-output\n"
        );
    }
    // push=false (the default) keeps it local.
    let z = format!("{}/z:1", reg.host());
    ok(
        &a,
        &[
            "build",
            "-q",
            "-o",
            &format!("type=image,name={z},push=false"),
            ctx.to_str().unwrap(),
        ],
    );
    // push=false pushed nothing: the registry has no z:1.
    let r = fails(&Rbuild::new(), &["pull", &z]);
    assert!(
        r.stderr
            .contains(&format!("manifest z:1 not found in {}", reg.host())),
        "{}",
        r.stderr
    );
    // Without a name there is nothing to push to.
    let r = fails(
        &a,
        &["build", "-o", "type=image,push=true", ctx.to_str().unwrap()],
    );
    assert!(r.stderr.contains("pushing needs a name"), "{}", r.stderr);
}

/// Uploads `data` as a blob of `repo` with curl (POST, then PUT with the
/// digest); returns its digest.
fn curl_push_blob(reg: &Registry, repo: &str, data: &[u8], dir: &std::path::Path) -> String {
    let file = dir.join("blob");
    std::fs::write(&file, data).unwrap();
    let sum = tool("sha256sum", &[file.to_str().unwrap()]);
    let digest = format!("sha256:{}", &sum[..64]);
    let headers = tool(
        "curl",
        &[
            "-sf",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            &format!("http://{}/v2/{repo}/blobs/uploads/", reg.host()),
        ],
    );
    let location = headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or_else(|| l.strip_prefix("location: "))
        })
        .unwrap()
        .trim()
        .to_string();
    let location = if location.starts_with('/') {
        format!("http://{}{location}", reg.host())
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    tool(
        "curl",
        &[
            "-sf",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", file.display()),
            &format!("{location}{sep}digest={digest}"),
        ],
    );
    digest
}

#[test]
fn a_docker_v2_image_with_a_plain_tar_labelled_gzip_pulls_and_unpacks() {
    let reg = Registry::start(None);
    let dir = tempfile::tempdir().unwrap();
    // An uncompressed layer that the manifest calls tar.gzip, as skopeo
    // can write it.
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let body = b"plain tar, gzip label\n";
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    builder.append_data(&mut h, "etc/note", &body[..]).unwrap();
    let layer = builder.into_inner().unwrap();
    let layer_digest = curl_push_blob(&reg, "odd", &layer, dir.path());
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    })
    .to_string();
    let config_digest = curl_push_blob(&reg, "odd", config.as_bytes(), dir.path());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": layer.len(), "digest": layer_digest}],
    })
    .to_string();
    let manifest_file = dir.path().join("manifest.json");
    std::fs::write(&manifest_file, &manifest).unwrap();
    tool(
        "curl",
        &[
            "-sf",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.docker.distribution.manifest.v2+json",
            "--data-binary",
            &format!("@{}", manifest_file.display()),
            &format!("http://{}/v2/odd/manifests/1", reg.host()),
        ],
    );

    let rb = Rbuild::new();
    let name = format!("{}/odd:1", reg.host());
    ok(&rb, &["pull", &name]);
    // index.json names the manifest with the media type it was served with.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rb.root().join("store-v1/index.json")).unwrap())
            .unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == name.as_str())
        .unwrap_or_else(|| panic!("{index}"));
    assert_eq!(
        entry["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    // The layer unpacks although its label says gzip.
    let ctx = rb.tree("ctx", &[("Dockerfile", &format!("FROM {name}\n"))]);
    let out = dir.path().join("out");
    ok(
        &rb,
        &[
            "build",
            "-q",
            "-o",
            &format!("type=local,dest={}", out.display()),
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(out.join("etc/note")).unwrap(), body.to_vec());
}

/// The machine's host name when it is not a loopback name rbuild trusts
/// by itself, so a registry can be named by it (it resolves to some
/// address of this machine; the proxy listens on all of them).
fn non_loopback_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_string();
    use std::net::ToSocketAddrs;
    let resolves = (name.as_str(), 80)
        .to_socket_addrs()
        .is_ok_and(|mut a| a.next().is_some());
    (resolves
        && !name.is_empty()
        && name != "localhost"
        && name.parse::<std::net::IpAddr>().is_err())
    .then_some(name)
}

#[test]
fn a_registry_not_on_loopback_needs_the_flag_or_rbuilds_config_file_for_plain_http() {
    let Some(hostname) = non_loopback_hostname() else {
        support::skipped(
            "a_registry_not_on_loopback_needs_the_flag_or_rbuilds_config_file_for_plain_http",
            "this machine's host name does not resolve or is localhost",
        );
        return;
    };
    let reg = Registry::start(None);
    let proxy = Proxy::start("0.0.0.0", reg.port);
    let host = format!("{hostname}:{}", proxy.port);
    let rb = Rbuild::new();
    rb.busybox();
    let name = format!("{host}/cfg/bb:1");
    ok(&rb, &["tag", "busybox", &name]);

    // No config: https is tried, the plain-HTTP registry cannot answer
    // it, and the error says both ways out.
    let r = fails(&rb, &["push", &name]);
    let config = rb.root().join("config.json");
    assert!(
        r.stderr.contains(&format!("cannot speak TLS with {host}"))
            && r.stderr.contains(&format!("--insecure-registry {host}"))
            && r.stderr
                .contains(&format!("\"insecure-registries\" in {}", config.display())),
        "{}",
        r.stderr
    );
    assert!(!reg.access_log().contains("PUT "), "{}", reg.access_log());

    // A malformed config file is an error naming it, line and column.
    std::fs::write(&config, "{\n  \"insecure-registries\": [\"x\" \"y\"]\n}\n").unwrap();
    let r = fails(&rb, &["push", &name]);
    assert!(
        r.stderr
            .contains(&format!("malformed config file {}:2:", config.display())),
        "{}",
        r.stderr
    );

    // Listed in the store's config.json: push and pull go over HTTP.
    std::fs::write(
        &config,
        format!("{{\"insecure-registries\": [\"{host}\"]}}\n"),
    )
    .unwrap();
    let out = ok(&rb, &["push", &name]);
    assert!(out.contains(": Pushed\n"), "{out}");
    let info = ok(&rb, &["info"]);
    assert!(
        info.contains(&format!("Config Files:\n {}\n", config.display())),
        "{info}"
    );
    assert!(
        info.contains(&format!(
            "Insecure Registries:\n localhost, 127.0.0.0/8, ::1\n {host}\n"
        )),
        "{info}"
    );

    // The user's config file ($XDG_CONFIG_HOME/rbuild/config.json) works
    // for another store too, and so does a build's FROM.
    let other = Rbuild::new();
    let user = other.path("xdg-config/rbuild/config.json");
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(
        &user,
        format!("{{\"insecure-registries\": [\"{hostname}\"]}}"),
    )
    .unwrap();
    let ctx = other.tree(
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM {name}\nRUN echo from-config\n"),
        )],
    );
    let r = build_plain(&other, &ctx);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("from-config"), "{}", r.stderr);
    let info = ok(&other, &["info"]);
    assert!(
        info.contains(&format!(
            "Config Files:\n {} (not present)\n {}\n",
            other.root().join("config.json").display(),
            user.display()
        )),
        "{info}"
    );
}

/// `len` bytes that do not compress (xorshift), so a layer is that big on
/// the wire too.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn a_pull_killed_midway_leaves_a_consistent_store_and_the_retry_fetches_only_whats_missing() {
    let reg = Registry::start(None);
    let a = Rbuild::new();
    a.busybox();
    let big = random_bytes(24 << 20, 7);
    let ctx = a.tree(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY small /small\nCOPY big /big\n",
            ),
            ("small", "small layer\n"),
        ],
    );
    std::fs::write(ctx.join("big"), &big).unwrap();
    let name = format!("{}/big:1", reg.host());
    ok(&a, &["build", "-q", "-t", &name, ctx.to_str().unwrap()]);
    ok(&a, &["push", &name]);
    let (id, manifest) = ids(&a, &name);

    // Pull through a proxy that stops passing bytes halfway through the
    // big layer (the small blobs are through by then), then SIGKILL.
    let proxy = Proxy::start("127.0.0.1", reg.port);
    proxy.set_limit(12 << 20);
    let via = format!("127.0.0.1:{}/big:1", proxy.port);
    let b = Rbuild::new();
    let mut child = b
        .private_command(&["pull", &via])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while proxy.sent() < 12 << 20 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the pull stalled early: {} bytes",
            proxy.sent()
        );
        assert!(child.try_wait().unwrap().is_none(), "pull ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Let the blobs that arrived whole be committed (the config at least;
    // fsync may be slow on a busy machine).
    let start = std::time::Instant::now();
    while blob_count(&b) == 0 && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();

    // Nothing half-written is a blob, the image is not tagged, and the
    // store checks clean.
    let stored: Vec<String> = std::fs::read_dir(b.root().join("store-v1/blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    // The manifest's blobs: config and three layers.
    let wanted: Vec<String> = {
        let m = stored_manifest(&a, &manifest);
        std::iter::once(&m["config"])
            .chain(m["layers"].as_array().unwrap())
            .map(|d| d["digest"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(wanted.len(), 4);
    assert!(
        !stored.is_empty() && stored.len() < wanted.len(),
        "some blobs, not all, should have arrived whole before the kill: {stored:?}"
    );
    assert!(stored.iter().all(|d| wanted.contains(d)), "{stored:?}");
    let check = ok(&b, &["system", "check"]);
    assert!(check.contains(": 0 problems"), "{check}");
    assert_eq!(ok(&b, &["images", "-q"]), "");

    // The retry downloads exactly what is missing.
    // The registry logs a request when it ends: the killed pull's stalled
    // GETs end once the proxy lets their bytes go (to a closed socket).
    proxy.set_limit(u64::MAX);
    let start = std::time::Instant::now();
    while !wanted
        .iter()
        .all(|d| blob_gets(&reg.access_log()).contains(d))
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{}",
            reg.access_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log_before = reg.access_log().len();
    let out = ok(&b, &["pull", &via]);
    assert!(out.contains(": Already exists\n"), "{out}");
    let fetched = blob_gets(&reg.access_log()[log_before..]);
    for digest in &stored {
        assert!(
            !fetched.contains(digest),
            "{digest} was complete but fetched again: {fetched:?}"
        );
    }
    // …and each missing blob once.
    let mut missing: Vec<&String> = wanted.iter().filter(|d| !stored.contains(d)).collect();
    let mut fetched_sorted: Vec<&String> = fetched.iter().collect();
    missing.sort();
    fetched_sorted.sort();
    assert_eq!(fetched_sorted, missing, "{out}");
    assert_eq!(ids(&b, &via).0, id);
    assert_eq!(ids(&b, &via).1, manifest);
    ok(&b, &["system", "check"]);
    assert_eq!(
        ok(&b, &["run", "--rm", &via, "wc", "-c", "/big"]).trim(),
        format!("{} /big", big.len())
    );
    // The killed pull's scratch was swept.
    let leftovers: Vec<_> = std::fs::read_dir(b.root().join("store-v1/tmp"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).into_iter().flatten())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_build_shows_the_pull_of_its_base_image_in_plain_and_json_progress() {
    let reg = Registry::start(None);
    let a = Rbuild::new();
    a.busybox();
    let base = push_busybox(&a, &reg, "base");
    let (config, manifest) = ids(&a, &base);
    let layer = stored_manifest(&a, &manifest)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let dockerfile = format!("FROM {base}\nRUN echo on-pulled-base\n");

    let b = Rbuild::new();
    let ctx = b.tree("ctx", &[("Dockerfile", &dockerfile)]);
    let r = build_plain(&b, &ctx);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // `#1 [internal] pull 127.0.0.1:PORT/base:latest`, then BuildKit's
    // `#1 sha256:… 1.2MB / 3.4MB 0.1s done` per blob, then `#1 DONE`.
    let header = format!("#1 [internal] pull {base}:latest\n");
    assert!(r.stderr.starts_with(&header), "{}", r.stderr);
    for digest in [&layer, &config] {
        let done = r
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("#1 {digest} ")) && l.ends_with(" done"));
        assert!(done.is_some(), "no done line for {digest}:\n{}", r.stderr);
        let (current, total) = done
            .unwrap()
            .split_once(" / ")
            .map(|(c, t)| (c.rsplit(' ').next().unwrap(), t.split(' ').next().unwrap()))
            .unwrap();
        assert_eq!(current, total, "{}", r.stderr);
    }
    assert!(r.stderr.contains("\n#1 DONE "), "{}", r.stderr);
    assert!(r.stderr.contains("on-pulled-base"), "{}", r.stderr);

    // A second build has the base: no pull step.
    let r = build_plain(&b, &ctx);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("[internal] pull"), "{}", r.stderr);

    // json: a started step, transfer objects ending with done, finished.
    let c = Rbuild::new();
    let ctx = c.tree("ctx", &[("Dockerfile", &dockerfile)]);
    let r = rb_run(
        &c,
        &["build", "--progress", "json", ctx.to_str().unwrap()],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let events: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let pull_step = events
        .iter()
        .find(|e| e["event"] == "started" && e["name"] == format!("[internal] pull {base}:latest"))
        .unwrap_or_else(|| panic!("{}", r.stderr))["step"]
        .clone();
    assert!(
        events.iter().any(|e| e["event"] == "transfer"
            && e["step"] == pull_step
            && e["name"] == layer.as_str()
            && e["done"] == true
            && e["current"] == e["total"]),
        "{}",
        r.stderr
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "finished" && e["step"] == pull_step),
        "{}",
        r.stderr
    );
}

#[test]
fn a_failed_base_image_pull_ends_its_progress_step_with_the_error() {
    let reg = Registry::start(None);
    let b = Rbuild::new();
    let ctx = b.tree(
        "ctx",
        &[("Dockerfile", &format!("FROM {}/missing\n", reg.host()))],
    );
    let r = build_plain(&b, &ctx);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(&format!(
            "#1 ERROR: manifest missing:latest not found in {}",
            reg.host()
        )),
        "{}",
        r.stderr
    );
}
