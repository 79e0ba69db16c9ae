//! MCU subscriptions end to end, in headless Chromium (`tests/browser/mcu.mjs`): three
//! publisher pages send a tone (440, 660, 880 Hz) and a canvas of one solid colour (red,
//! green, blue); an MCU subscriber page (`?mode=mcu`) hears all three tones in its one
//! audio track (WebAudio spectrum) and sees each colour in its grid cell of its one
//! video track (frames drawn on a canvas); a publisher that also subscribes in MCU mode
//! hears the other two tones but not its own; a publisher leaving takes its cell and its
//! tone away within 2 s. The same through a cascade: publishers on M1, the MCU
//! subscriber on M2 naming their publications with `resource=`.
//!
//! The servers run in one namespace (on 10.73.0.1), the browser in another, joined by
//! a veth pair. Conditions are polled with deadlines; the figures (tone levels above the
//! spectrum's floor, sampled colours, the leave time) are printed for the record.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Child, ChildStdin};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cascade_tests::cascade::cluster_args;
use cascade_tests::netns::{self, Netns};
use cascade_tests::{ServerProcess, mint_token, random_room};
use serde_json::{Value, json};

const SECRET: &str = "mcu-browser-secret";
const CLUSTER: &str = "mcu-browser-cluster";

/// One tone and one colour per publisher, in publish order. The tone that must be
/// absent (a publisher's own in its own mix, a leaver's) is green's 660 Hz, the one that
/// is no low-order product of the other two: 880 Hz is 440 Hz's second harmonic and
/// 440 Hz is 2·660 − 880 Hz, and a mix of two of the tones carries such products up to
/// about 12 dB above its floor.
const PUBLISHERS: [(&str, f64, [u8; 3]); 3] = [
    ("red", 440.0, [255, 0, 0]),
    ("green", 660.0, [0, 255, 0]),
    ("blue", 880.0, [0, 0, 255]),
];

/// A tone counts as present this far above the median of the 200-1200 Hz band: a
/// sine through Opus stands 50-80 dB above that band's floor, a band with no tone in
/// it varies by about 10 dB from bin to bin, so 20 dB keeps both margins wide.
const PRESENT_DB: f64 = 20.0;
/// A tone counts as absent below this much above the floor (noise peaks reach ~10 dB
/// above the median in some bins of a single unsmoothed spectrum).
const ABSENT_DB: f64 = 10.0;
/// Largest distance (Euclidean, in 8-bit RGB) between a sampled colour and the
/// published one: VP8 and the YUV round trips move a saturated colour by 20-60.
const COLOUR_TOLERANCE: f64 = 90.0;
/// The poll interval of every condition.
const POLL: Duration = Duration::from_millis(100);
/// How long media may take to show up in a fresh subscription.
const MEDIA_DEADLINE: Duration = Duration::from_secs(25);
/// How fast a publisher that leaves must be gone from the mix and the grid.
const LEAVE_LIMIT: Duration = Duration::from_secs(2);

/// One Chromium at a time: each test runs several pages encoding and decoding video.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The `mcu.mjs` process: commands go to its stdin, replies come back by id.
struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    next_id: u64,
    /// Replies read while waiting for another id.
    early: HashMap<u64, Value>,
}

impl Driver {
    fn start(ns: &Netns) -> anyhow::Result<Self> {
        let d = cascade_tests::BrowserDriver::spawn(
            ns.command("node"),
            "mcu.mjs",
            &["--timeout-ms", "150000"],
        )?;
        let (child, stdin, lines) = (d.child, d.stdin, d.lines);
        let driver = Self {
            child,
            stdin,
            lines,
            next_id: 0,
            early: HashMap::new(),
        };
        let ready = driver
            .lines
            .recv_timeout(Duration::from_secs(30))
            .context("mcu.mjs did not start Chromium within 30 s")?;
        anyhow::ensure!(ready["event"] == "ready", "mcu.mjs: {ready}");
        Ok(driver)
    }

    /// Sends `cmd` (an object) and returns its id without waiting.
    fn send(&mut self, mut cmd: Value) -> anyhow::Result<u64> {
        self.next_id += 1;
        cmd["id"] = json!(self.next_id);
        let stdin = self.stdin.as_mut().context("driver closed")?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        Ok(self.next_id)
    }

    /// The reply to command `id`, within `timeout`.
    fn reply(&mut self, id: u64, timeout: Duration) -> anyhow::Result<Value> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(v) = self.early.remove(&id) {
                if v["event"] == "error" {
                    bail!("mcu.mjs: {}", v["message"]);
                }
                return Ok(v);
            }
            let left = end.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .with_context(|| format!("no reply to command {id} within {timeout:?}"))?;
            match (v["id"].as_u64(), v["event"].as_str()) {
                (Some(n), _) => {
                    self.early.insert(n, v);
                }
                (None, Some("error")) => bail!("mcu.mjs: {}", v["message"]),
                _ => eprintln!("mcu.mjs: {v}"),
            }
        }
    }

    /// Sends `cmd` and waits for its reply.
    fn call(&mut self, cmd: Value, timeout: Duration) -> anyhow::Result<Value> {
        let id = self.send(cmd)?;
        self.reply(id, timeout)
    }

    /// Sends every command, then waits for all replies (in order).
    fn call_all(&mut self, cmds: Vec<Value>, timeout: Duration) -> anyhow::Result<Vec<Value>> {
        let ids = cmds
            .into_iter()
            .map(|c| self.send(c))
            .collect::<anyhow::Result<Vec<_>>>()?;
        ids.into_iter().map(|id| self.reply(id, timeout)).collect()
    }

    fn analyse(
        &mut self,
        page: &str,
        freqs: &[f64],
        points: &[(f64, f64)],
    ) -> anyhow::Result<Analysis> {
        let v = self.call(
            json!({"cmd": "analyse", "page": page, "freqs": freqs, "points": points}),
            Duration::from_secs(10),
        )?;
        Ok(Analysis::from_reply(&v))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stdin.take();
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One spectrum and one frame of a subscription.
#[derive(Debug, Clone)]
struct Analysis {
    floor_db: f64,
    /// Each asked frequency's level above the floor, in dB.
    above: Vec<(f64, f64)>,
    size: (u64, u64),
    samples: Vec<[f64; 3]>,
}

impl Analysis {
    fn from_reply(v: &Value) -> Self {
        let above = v["audio"]["levels"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|x| {
                        (
                            x["freq"].as_f64().unwrap_or(0.0),
                            x["above"].as_f64().unwrap_or(0.0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let samples = v["video"]["samples"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|c| [0, 1, 2].map(|k| c[k].as_f64().unwrap_or(0.0)))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            floor_db: v["audio"]["floor_db"].as_f64().unwrap_or(-200.0),
            above,
            size: (
                v["video"]["width"].as_u64().unwrap_or(0),
                v["video"]["height"].as_u64().unwrap_or(0),
            ),
            samples,
        }
    }

    fn level(&self, freq: f64) -> f64 {
        self.above
            .iter()
            .find(|(f, _)| *f == freq)
            .map_or(f64::NEG_INFINITY, |(_, a)| *a)
    }

    fn present(&self, freq: f64) -> bool {
        self.level(freq) >= PRESENT_DB
    }

    fn absent(&self, freq: f64) -> bool {
        self.level(freq) < ABSENT_DB
    }

    /// The sample at `i` is within tolerance of `rgb`.
    fn colour_is(&self, i: usize, rgb: [u8; 3]) -> bool {
        self.samples.get(i).is_some_and(|s| close(*s, rgb))
    }

    fn levels_text(&self) -> String {
        let levels: Vec<String> = self
            .above
            .iter()
            .map(|(f, a)| format!("{f} Hz {a:+.1} dB"))
            .collect();
        format!("floor {:.1} dB; {}", self.floor_db, levels.join(", "))
    }

    fn colours_text(&self) -> String {
        let s: Vec<String> = self
            .samples
            .iter()
            .map(|c| format!("({:.0},{:.0},{:.0})", c[0], c[1], c[2]))
            .collect();
        format!("{}x{}: {}", self.size.0, self.size.1, s.join(" "))
    }
}

fn close(sample: [f64; 3], rgb: [u8; 3]) -> bool {
    distance(sample, rgb) <= COLOUR_TOLERANCE
}

fn distance(sample: [f64; 3], rgb: [u8; 3]) -> f64 {
    (0..3)
        .map(|k| (sample[k] - f64::from(rgb[k])).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Centres of the cells of a `cols` x `rows` grid, row-major, as fractions of the frame.
fn cell_centres(cols: u32, rows: u32) -> Vec<(f64, f64)> {
    let mut v = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            v.push((
                (f64::from(c) + 0.5) / f64::from(cols),
                (f64::from(r) + 0.5) / f64::from(rows),
            ));
        }
    }
    v
}

/// Polls `analyse` every [`POLL`] until `ok` holds or `deadline` passes; returns the
/// last analysis and, when `ok` held, how long it took.
fn poll_until(
    driver: &mut Driver,
    page: &str,
    freqs: &[f64],
    points: &[(f64, f64)],
    deadline: Duration,
    ok: impl Fn(&Analysis) -> bool,
) -> anyhow::Result<(Analysis, Option<Duration>)> {
    let start = Instant::now();
    loop {
        let a = driver.analyse(page, freqs, points)?;
        if ok(&a) {
            return Ok((a, Some(start.elapsed())));
        }
        if start.elapsed() >= deadline {
            return Ok((a, None));
        }
        std::thread::sleep(POLL);
    }
}

/// For the record once a condition holds: each tone's level above the floor over the
/// next ten spectra of `page`, as "median (min)".
fn settled_levels(driver: &mut Driver, page: &str, freqs: &[f64]) -> anyhow::Result<String> {
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); freqs.len()];
    for _ in 0..10 {
        std::thread::sleep(POLL);
        let a = driver.analyse(page, freqs, &[])?;
        for (run, f) in runs.iter_mut().zip(freqs) {
            run.push(a.level(*f));
        }
    }
    let text: Vec<String> = runs
        .iter_mut()
        .zip(freqs)
        .map(|(run, f)| {
            run.sort_by(f64::total_cmp);
            format!("{f} Hz {:+.1} ({:+.1}) dB", run[run.len() / 2], run[0])
        })
        .collect();
    Ok(text.join(", "))
}

/// The servers' namespace (servers on 10.73.0.1) and the browser's, joined by a veth.
struct Topology {
    /// Each server's HTTP base; with a cascade, M1 then M2.
    bases: Vec<String>,
    driver: Driver,
    servers: Vec<ServerProcess>,
    // Dropped last: the processes above run inside them.
    _cli: Netns,
    srv: Netns,
}

impl Topology {
    fn start(servers: usize) -> anyhow::Result<Self> {
        let srv = Netns::new("msrv")?;
        let cli = Netns::new("mcli")?;
        netns::veth(&srv, "mc", "10.73.1.1/24", &cli, "eth0", "10.73.1.2/24")?;
        srv.ip(["addr", "add", "10.73.0.1/32", "dev", "lo"])?;
        cli.ip(["route", "add", "default", "via", "10.73.1.1"])?;
        let mut args = vec![
            "--http-listen".to_owned(),
            "10.73.0.1:0".to_owned(),
            "--media-listen".to_owned(),
            "10.73.0.1:0".to_owned(),
        ];
        args.extend(cluster_args(SECRET, CLUSTER));
        let servers = (0..servers)
            .map(|_| srv.spawn_server(&args))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let bases = servers
            .iter()
            .map(|s| s.http_base.trim_end_matches('/').to_owned())
            .collect();
        let driver = Driver::start(&cli)?;
        Ok(Self {
            bases,
            driver,
            servers,
            _cli: cli,
            srv,
        })
    }

    /// Opens one page per publisher and `extra` pages, then publishes on server
    /// `server` one after the other (publish order is grid order); returns the
    /// publications' resource URLs.
    fn publish_all(
        &mut self,
        room: &str,
        server: usize,
        extra: &[&str],
    ) -> anyhow::Result<Vec<String>> {
        let opens = PUBLISHERS
            .iter()
            .map(|p| p.0)
            .chain(extra.iter().copied())
            .map(|page| json!({"cmd": "open", "page": page}))
            .collect();
        self.driver.call_all(opens, Duration::from_secs(30))?;
        let mut resources = Vec::new();
        for (user, freq, colour) in PUBLISHERS {
            let token = mint_token(SECRET, room, user, &["publish", "subscribe"], None)?;
            let r = self.driver.call(
                json!({"cmd": "publish", "page": user, "base": self.bases[server], "room": room,
                       "token": token, "freq": freq, "colour": colour}),
                Duration::from_secs(40),
            )?;
            resources.push(r["resource"].as_str().context("no resource")?.to_owned());
        }
        Ok(resources)
    }

    /// Subscribes page `page` as `user` on server `server` with `query`.
    fn subscribe(
        &mut self,
        page: &str,
        user: &str,
        room: &str,
        server: usize,
        query: &str,
    ) -> anyhow::Result<Value> {
        let token = mint_token(SECRET, room, user, &["subscribe"], None)?;
        self.driver.call(
            json!({"cmd": "subscribe", "page": page, "base": self.bases[server], "room": room,
                   "token": token, "query": query}),
            Duration::from_secs(40),
        )
    }

    /// The `cascade_mcu_*` lines of server `server`'s metrics, for the record.
    fn mcu_metrics(&self, server: usize) -> String {
        match self.srv.metrics_text(&self.bases[server]) {
            Ok(text) => text
                .lines()
                .filter(|l| l.starts_with("cascade_mcu_") && !l.contains("_bucket"))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("no metrics: {e:#}"),
        }
    }

    /// What the servers logged last, for a failure's message.
    fn logs(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.stderr_tail())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

/// The three tones and, in a 2x2 grid, the three colours (and a dark fourth cell).
fn mix_and_grid_ok(a: &Analysis) -> bool {
    PUBLISHERS.iter().all(|p| a.present(p.1))
        && PUBLISHERS
            .iter()
            .enumerate()
            .all(|(i, p)| a.colour_is(i, p.2))
        && a.samples
            .get(3)
            .is_some_and(|s| s.iter().all(|c| *c < 80.0))
}

/// Scenario 1 (and 4 through a cascade): waits for all three tones and colours on
/// `page`; fails with the last figures seen.
fn check_mix_and_grid(
    topo: &mut Topology,
    page: &str,
    server: usize,
    what: &str,
) -> anyhow::Result<()> {
    let freqs: Vec<f64> = PUBLISHERS.iter().map(|p| p.1).collect();
    let points = cell_centres(2, 2);
    let (a, took) = poll_until(
        &mut topo.driver,
        page,
        &freqs,
        &points,
        MEDIA_DEADLINE,
        mix_and_grid_ok,
    )?;
    let stats = topo.driver.call(
        json!({"cmd": "stats", "page": page}),
        Duration::from_secs(10),
    )?;
    println!(
        "MCU subscriber{what}: tones {}; cells (red, green, blue, empty) {}",
        a.levels_text(),
        a.colours_text()
    );
    if took.is_none() {
        bail!(
            "the MCU subscriber{what} did not get all three tones (>= {PRESENT_DB} dB above the floor) \
             and colours in a 2x2 grid within {MEDIA_DEADLINE:?}: tones {}; cells {}; stats {stats}\nserver logs:\n{}",
            a.levels_text(),
            a.colours_text(),
            topo.logs()
        );
    }
    println!(
        "MCU subscriber{what}: all held after {} ms; tones over the next second, median (min) above the floor: {}",
        took.unwrap_or_default().as_millis(),
        settled_levels(&mut topo.driver, page, &freqs)?
    );
    println!(
        "metrics of the MCU server{what}:\n{}",
        topo.mcu_metrics(server)
    );
    Ok(())
}

/// Scenarios 1 to 3 on one server: the mix and the grid, a publisher's own voice left
/// out of its own MCU subscription, a publisher leaving within 2 s.
#[test]
fn mcu_subscriber_hears_every_tone_and_sees_every_colour() -> anyhow::Result<()> {
    if !cascade_tests::browser_prerequisites() || !netns::require() {
        return Ok(());
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut topo = Topology::start(1)?;
    let room = random_room("mcu");
    topo.publish_all(&room, 0, &["viewer"])?;
    let [red, green, blue] = PUBLISHERS;
    // The viewer (a fourth user) and green (a publisher) subscribe in MCU mode.
    let viewer = topo.subscribe("viewer", "viewer", &room, 0, "mode=mcu")?;
    let own = topo.subscribe(green.0, green.0, &room, 0, "mode=mcu")?;
    eprintln!("viewer subscription: {viewer}\ngreen's subscription: {own}");

    check_mix_and_grid(&mut topo, "viewer", 0, "")?;

    // Scenario 2: green hears red and blue, not itself.
    let freqs: Vec<f64> = PUBLISHERS.iter().map(|p| p.1).collect();
    let (a, took) = poll_until(
        &mut topo.driver,
        green.0,
        &freqs,
        &[],
        MEDIA_DEADLINE,
        |a| a.absent(green.1) && a.present(red.1) && a.present(blue.1),
    )?;
    println!("green's own MCU subscription: tones {}", a.levels_text());
    anyhow::ensure!(
        took.is_some(),
        "green's MCU subscription should carry 440 and 880 Hz (>= {PRESENT_DB} dB) but not its own \
         660 Hz (< {ABSENT_DB} dB) within {MEDIA_DEADLINE:?}: {}",
        a.levels_text()
    );
    println!(
        "green's own MCU subscription over the next second, median (min) above the floor: {}",
        settled_levels(&mut topo.driver, green.0, &freqs)?
    );

    // Scenario 3: green leaves; the grid becomes 2x1 (red, blue) and 660 Hz goes.
    let points = {
        let mut p = cell_centres(2, 1);
        // Where green could be: the old and the new cells' centres, and more.
        p.extend(cell_centres(4, 4));
        p
    };
    let left = |a: &Analysis| {
        a.absent(green.1)
            && a.present(red.1)
            && a.present(blue.1)
            && a.colour_is(0, red.2)
            && a.colour_is(1, blue.2)
            && a.samples.iter().all(|s| !close(*s, green.2))
    };
    let sent = Instant::now();
    let status = topo.driver.call(
        json!({"cmd": "unpublish", "page": green.0}),
        Duration::from_secs(10),
    )?;
    anyhow::ensure!(
        status["status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s)),
        "DELETE of green's publication: {status}"
    );
    let (a, _) = poll_until(
        &mut topo.driver,
        "viewer",
        &freqs,
        &points,
        Duration::from_secs(10),
        left,
    )?;
    let took = left(&a).then(|| sent.elapsed());
    println!(
        "green left: {} after its DELETE; tones {}; cells (red, blue, then a 4x4 sweep) {}",
        took.map_or("not gone within 10 s".to_owned(), |t| format!(
            "gone {} ms",
            t.as_millis()
        )),
        a.levels_text(),
        a.colours_text()
    );
    let took = took.with_context(|| {
        format!(
            "after green's DELETE the viewer should lose 660 Hz and green's cell (2x1 grid of red, blue): \
             tones {}; cells {}",
            a.levels_text(),
            a.colours_text()
        )
    })?;
    println!(
        "after green left, over the next second, median (min) above the floor: {}",
        settled_levels(&mut topo.driver, "viewer", &freqs)?
    );
    anyhow::ensure!(
        took <= LEAVE_LIMIT,
        "green's cell and tone went {} ms after its DELETE, more than {LEAVE_LIMIT:?}",
        took.as_millis()
    );
    Ok(())
}

/// Scenario 4: the publishers on M1, the MCU subscriber on M2 naming their three
/// publications with `resource=`.
#[test]
fn mcu_subscriber_mixes_publications_relayed_through_a_cascade() -> anyhow::Result<()> {
    if !cascade_tests::browser_prerequisites() || !netns::require() {
        return Ok(());
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut topo = Topology::start(2)?;
    let room = random_room("mcu-cascade");
    let resources = topo.publish_all(&room, 0, &["viewer"])?;
    let mut url = reqwest::Url::parse("http://query.invalid/")?;
    url.query_pairs_mut()
        .append_pair("mode", "mcu")
        .extend_pairs(resources.iter().map(|r| ("resource", r.as_str())));
    let query = url.query().context("no query")?.to_owned();
    let viewer = topo.subscribe("viewer", "viewer", &room, 1, &query)?;
    eprintln!("viewer subscription on M2: {viewer}");
    check_mix_and_grid(&mut topo, "viewer", 1, " on M2 (publishers on M1)")?;
    Ok(())
}
