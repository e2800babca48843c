//! Reading a suite file: TOML → checked [`Suite`].
//!
//! The file is deserialised with serde into `*Def` structs that keep the
//! byte span of every value the checks look at ([`toml::Spanned`]; the
//! impairment keys, an [`ImpairmentSpec`](risp_netem::ImpairmentSpec)
//! shared with the command line, through [`WithLink`]), so a semantic
//! error (a probability of 1.5, a zero length) points at its line just as
//! a syntax error does. Nothing here panics on bad input: every number goes
//! through a checked conversion before it becomes a [`Duration`].

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use risp_netem::{Blackhole, ConfigError, DirectionConfig, ImpairmentConfig};
use serde::Deserialize;
use toml::Spanned;

use super::error::{line_column, SuiteError};
use super::link_keys::{LinkKeys, WithLink};
use super::profile::{Expectations, Profile, Suite, DEFAULT_LEN, MAX_CLIENTS};
use super::seeds::SeedsDef;
use crate::proto::client::MAX_WINDOW;
use crate::transfer::BottleneckConfig;

/// A check that failed, with the span it concerns.
struct Problem {
    span: Option<Range<usize>>,
    reason: String,
}

fn problem<T>(span: Option<Range<usize>>, reason: impl Into<String>) -> Result<T, Problem> {
    Err(Problem {
        span,
        reason: reason.into(),
    })
}

/// `Option<Spanned<T>>` as used throughout the definitions.
type Sp<T> = Option<Spanned<T>>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteDef {
    name: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    len: Sp<u32>,
    clients: Sp<usize>,
    seeds: Sp<SeedsDef>,
    sack: Option<bool>,
    max_window: Sp<u32>,
    time_limit_ms: Sp<f64>,
    stagger_ms: Sp<f64>,
    expect: Option<ExpectDef>,
    #[serde(default)]
    profile: Vec<Spanned<WithLink<ProfileDef>>>,
}

/// One `[[profile]]`, less its impairment keys for both directions (read
/// beside it, see [`WithLink`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileDef {
    name: Spanned<String>,
    #[allow(dead_code)]
    description: Option<String>,
    len: Sp<u32>,
    clients: Sp<usize>,
    seeds: Sp<SeedsDef>,
    sack: Option<bool>,
    max_window: Sp<u32>,
    killswitch_ms: Sp<f64>,
    time_limit_ms: Sp<f64>,
    stagger_ms: Sp<f64>,
    plot: Option<bool>,
    // One direction, overriding the keys for both key by key.
    to_client: Option<WithLink<DirectionDef>>,
    to_server: Option<WithLink<DirectionDef>>,
    #[serde(default)]
    blackhole: Vec<Spanned<BlackholeDef>>,
    #[serde(default)]
    rebind_at_ms: Vec<Spanned<f64>>,
    bottleneck: Option<Spanned<BottleneckDef>>,
    expect: Option<ExpectDef>,
}

/// `bottleneck = { rate = 40000, queue = 100 }`: datagrams per second and
/// queue limit of a link every server-to-client datagram crosses.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct BottleneckDef {
    rate: f64,
    queue: usize,
}

/// `to_client = { ... }` / `to_server = { ... }`: impairment keys only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectionDef {}

/// One direction's impairments, checked; `dir` names it in messages. The
/// checks run in this order, so a table with several bad values names the
/// same one as ever.
fn check_direction(link: &LinkKeys, dir: &str) -> Result<DirectionConfig, Problem> {
    let s = &link.spec;
    finite(
        &link.at("burst", s.burst),
        Zero::Allowed,
        &format!("{dir}.burst must be a mean burst length >= 0 (datagrams)"),
    )?;
    for (key, p) in [
        ("loss", s.loss),
        ("duplicate", s.duplicate),
        ("corrupt", s.corrupt),
        ("reorder", s.reorder),
    ] {
        if let Some(p) = p.filter(|p| !(0.0..=1.0).contains(p)) {
            return problem(
                link.span(key),
                format!("{dir}.{key} must be a probability in [0, 1], got {p}"),
            );
        }
    }
    for (key, ms) in [
        ("reorder_gap_ms", s.reorder_gap_ms),
        ("delay_ms", s.delay_ms),
        ("jitter_ms", s.jitter_ms),
    ] {
        millis(&link.at(key, ms), key, Zero::Allowed)?;
    }
    Ok(s.direction())
}

/// `{ start_ms = ..., duration_ms = ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlackholeDef {
    start_ms: Spanned<f64>,
    duration_ms: Spanned<f64>,
}

/// `[expect]` / `[profile.expect]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectDef {
    all_verified: Option<bool>,
    max_datagrams_per_value: Sp<f64>,
    max_completion_ms: Sp<f64>,
    max_stall_ms: Sp<f64>,
    min_utilisation: Sp<f64>,
    max_bottleneck_drops: Sp<f64>,
}

impl ExpectDef {
    fn check(&self) -> Result<Expectations, Problem> {
        let max_datagrams_per_value = finite(
            &self.max_datagrams_per_value,
            Zero::Refused,
            "max_datagrams_per_value must be a number > 0",
        )?;
        Ok(Expectations {
            all_verified: self.all_verified,
            max_datagrams_per_value,
            max_completion: millis(&self.max_completion_ms, "max_completion_ms", Zero::Refused)?,
            max_stall: millis(&self.max_stall_ms, "max_stall_ms", Zero::Refused)?,
            min_utilisation: fraction(&self.min_utilisation, "min_utilisation")?,
            max_bottleneck_drops: fraction(&self.max_bottleneck_drops, "max_bottleneck_drops")?,
        })
    }
}

/// The seeds `seeds = ...` gives, checked.
fn seeds(s: &Spanned<SeedsDef>) -> Result<Vec<u64>, Problem> {
    s.get_ref()
        .check()
        .or_else(|reason| problem(Some(s.span()), reason))
}

/// Whether a zero duration is acceptable.
#[derive(Clone, Copy, PartialEq)]
enum Zero {
    Allowed,
    Refused,
}

/// Longest duration a suite may give (a year): keeps every later addition
/// of durations far from overflow.
const MAX_MS: f64 = 365.0 * 24.0 * 3600.0 * 1000.0;

/// A `*_ms` value as a [`Duration`], checked: finite, not negative, not
/// absurdly large, and non-zero where zero makes no sense.
fn millis(v: &Sp<f64>, key: &str, zero: Zero) -> Result<Option<Duration>, Problem> {
    let Some(s) = v else { return Ok(None) };
    one_millis(s, key, zero).map(Some)
}

/// A fraction in [0, 1] at `key`.
fn fraction(v: &Sp<f64>, key: &str) -> Result<Option<f64>, Problem> {
    let Some(s) = v else { return Ok(None) };
    let x = *s.get_ref();
    if (0.0..=1.0).contains(&x) {
        Ok(Some(x))
    } else {
        problem(Some(s.span()), format!("{key} must be in [0, 1], got {x}"))
    }
}

/// A finite number, >= 0 or > 0 as `zero` says; otherwise `rule`, with the
/// value, at the key's position.
fn finite(v: &Sp<f64>, zero: Zero, rule: &str) -> Result<Option<f64>, Problem> {
    let Some(s) = v else { return Ok(None) };
    let x = *s.get_ref();
    let ok = x.is_finite()
        && if zero == Zero::Allowed {
            x >= 0.0
        } else {
            x > 0.0
        };
    if ok {
        Ok(Some(x))
    } else {
        problem(Some(s.span()), format!("{rule}, got {x}"))
    }
}

fn one_millis(s: &Spanned<f64>, key: &str, zero: Zero) -> Result<Duration, Problem> {
    let ms = *s.get_ref();
    let ok = ms.is_finite()
        && ms <= MAX_MS
        && if zero == Zero::Allowed {
            ms >= 0.0
        } else {
            ms > 0.0
        };
    if !ok {
        let want = if zero == Zero::Allowed { ">= 0" } else { "> 0" };
        return problem(
            Some(s.span()),
            format!("{key} must be a number of milliseconds {want} (at most a year), got {ms}"),
        );
    }
    Duration::try_from_secs_f64(ms / 1000.0)
        .or_else(|e| problem(Some(s.span()), format!("{key}: {e}")))
}

fn positive<T: Copy + PartialOrd + Default + fmt::Display>(
    v: &Spanned<T>,
    key: &str,
    max: T,
) -> Result<T, Problem> {
    let x = *v.get_ref();
    if x <= T::default() || x > max {
        return problem(
            Some(v.span()),
            format!("{key} must be between 1 and {max}, got {x}"),
        );
    }
    Ok(x)
}

/// Suite-wide defaults, checked.
struct Defaults {
    len: u32,
    clients: usize,
    seeds: Vec<u64>,
    sack: bool,
    max_window: Option<u32>,
    time_limit: Option<Duration>,
    stagger: Duration,
    expect: Expectations,
}

impl SuiteDef {
    fn check(self, path: &Path) -> Result<Suite, Problem> {
        let defaults = Defaults {
            len: match &self.len {
                Some(s) => positive(s, "len", u32::MAX)?,
                None => DEFAULT_LEN,
            },
            clients: match &self.clients {
                Some(s) => positive(s, "clients", MAX_CLIENTS)?,
                None => 1,
            },
            seeds: match &self.seeds {
                Some(s) => seeds(s)?,
                None => vec![0],
            },
            sack: self.sack.unwrap_or(true),
            max_window: self
                .max_window
                .as_ref()
                .map(|s| positive(s, "max_window", MAX_WINDOW))
                .transpose()?,
            time_limit: millis(&self.time_limit_ms, "time_limit_ms", Zero::Refused)?,
            stagger: millis(&self.stagger_ms, "stagger_ms", Zero::Allowed)?.unwrap_or_default(),
            expect: self
                .expect
                .as_ref()
                .map(ExpectDef::check)
                .transpose()?
                .unwrap_or_default(),
        };
        if self.profile.is_empty() {
            return problem(
                None,
                "the suite has no profiles: add at least one [[profile]] with a name",
            );
        }
        let mut names = BTreeSet::new();
        let mut profiles = Vec::with_capacity(self.profile.len());
        for p in self.profile {
            let span = p.span();
            let WithLink { table: p, link } = p.into_inner();
            let name = p.name.get_ref().trim().to_string();
            if name.is_empty() {
                return problem(Some(p.name.span()), "profile name must not be empty");
            }
            if !names.insert(name.clone()) {
                return problem(
                    Some(p.name.span()),
                    format!("profile name {name:?} is used twice"),
                );
            }
            let profile = p
                .check(name.clone(), link, &defaults, span.clone())
                .map_err(|mut e| {
                    e.reason = format!("profile {name:?}: {}", e.reason);
                    e
                })?;
            profiles.push(profile);
        }
        let name = self.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "suite".to_string())
        });
        Ok(Suite { name, profiles })
    }
}

impl ProfileDef {
    fn check(
        self,
        name: String,
        both: LinkKeys,
        d: &Defaults,
        span: Range<usize>,
    ) -> Result<Profile, Problem> {
        let len = match &self.len {
            Some(s) => positive(s, "len", u32::MAX)?,
            None => d.len,
        };
        let clients = match &self.clients {
            Some(s) => positive(s, "clients", MAX_CLIENTS)?,
            None => d.clients,
        };
        let seeds = match &self.seeds {
            Some(s) => seeds(s)?,
            None => d.seeds.clone(),
        };
        let max_window = match &self.max_window {
            Some(s) => Some(positive(s, "max_window", MAX_WINDOW)?),
            None => d.max_window,
        };
        let killswitch = millis(&self.killswitch_ms, "killswitch_ms", Zero::Refused)?;
        let time_limit =
            millis(&self.time_limit_ms, "time_limit_ms", Zero::Refused)?.or(d.time_limit);
        let stagger = millis(&self.stagger_ms, "stagger_ms", Zero::Allowed)?.unwrap_or(d.stagger);

        let one_way = |d: Option<WithLink<DirectionDef>>| d.map(|d| d.link).unwrap_or_default();
        let to_client = one_way(self.to_client).or(&both);
        let to_server = one_way(self.to_server).or(&both);
        let mut impairment = ImpairmentConfig {
            to_server: check_direction(&to_server, "to_server")?,
            to_client: check_direction(&to_client, "to_client")?,
            blackholes: Vec::with_capacity(self.blackhole.len()),
            rebind_at: Vec::with_capacity(self.rebind_at_ms.len()),
        };
        for b in &self.blackhole {
            let b = b.get_ref();
            impairment.blackholes.push(Blackhole {
                start: one_millis(&b.start_ms, "blackhole.start_ms", Zero::Allowed)?,
                duration: one_millis(&b.duration_ms, "blackhole.duration_ms", Zero::Refused)?,
            });
        }
        for r in &self.rebind_at_ms {
            impairment
                .rebind_at
                .push(one_millis(r, "rebind_at_ms", Zero::Allowed)?);
        }
        // The model's own check (burst feasibility and anything it adds
        // later), pointed at the key that supplied the offending value.
        if let Err(e) = impairment.validate() {
            let field = match &e {
                ConfigError::ProbabilityOutOfRange { field, .. }
                | ConfigError::InvalidBurst { field, .. }
                | ConfigError::BurstInfeasible { field, .. } => Some(*field),
                _ => None,
            };
            let at = field
                .and_then(|f| f.split_once('.'))
                .and_then(|(dir, key)| match dir {
                    "to_client" => to_client.span(key),
                    "to_server" => to_server.span(key),
                    _ => None,
                })
                .unwrap_or(span);
            return problem(Some(at), e.to_string());
        }
        let bottleneck = match &self.bottleneck {
            None => None,
            Some(b) => {
                let def = *b.get_ref();
                if !(def.rate.is_finite() && def.rate >= 1.0) || def.queue == 0 {
                    return problem(
                        Some(b.span()),
                        "bottleneck needs rate >= 1 (datagrams per second) and queue >= 1"
                            .to_string(),
                    );
                }
                Some(BottleneckConfig {
                    rate: def.rate,
                    limit: def.queue,
                })
            }
        };
        let plot_default = {
            // Only independent loss (and a fixed delay, which moves the
            // completion time but not the datagram count).
            let only_loss = |x: &DirectionConfig| {
                DirectionConfig {
                    loss: 0.0,
                    delay: Duration::ZERO,
                    ..x.clone()
                } == DirectionConfig::default()
            };
            only_loss(&impairment.to_client)
                && only_loss(&impairment.to_server)
                && impairment.blackholes.is_empty()
                && impairment.rebind_at.is_empty()
                && killswitch.is_none()
                && bottleneck.is_none()
        };
        let expect = self
            .expect
            .as_ref()
            .map(ExpectDef::check)
            .transpose()?
            .unwrap_or_default()
            .or(d.expect);
        Ok(Profile {
            name,
            len,
            clients,
            seeds,
            sack: self.sack.unwrap_or(d.sack),
            max_window,
            killswitch,
            stagger,
            time_limit,
            impairment,
            plot: self.plot.unwrap_or(plot_default),
            bottleneck,
            expect,
        })
    }
}

impl Suite {
    /// Reads and checks the suite file at `path`.
    pub fn load(path: &Path) -> Result<Suite, SuiteError> {
        let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Suite::parse(&text, path)
    }

    /// Parses and checks suite text; `path` is used in messages and for the
    /// default name.
    pub fn parse(text: &str, path: &Path) -> Result<Suite, SuiteError> {
        let located = |span: Option<Range<usize>>, reason: String| {
            let (line, column) = span.map_or((0, 0), |s| line_column(text, s.start));
            SuiteError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                reason,
            }
        };
        let def: SuiteDef =
            toml::from_str(text).map_err(|e| located(e.span(), e.message().to_string()))?;
        def.check(path)
            .map_err(|Problem { span, reason }| located(span, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "[[profile]]\nname = \"a\"\n";

    /// (line, column, reason) of the error `text` gives.
    fn refused(text: &str) -> (usize, usize, String) {
        match Suite::parse(text, Path::new("t.toml")) {
            Err(SuiteError::Invalid {
                line,
                column,
                reason,
                ..
            }) => (line, column, reason),
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn impairment_errors_point_at_the_key_that_gave_the_value() {
        // A one-direction table of its own: the value's line.
        let (line, column, reason) = refused(&format!(
            "{HEAD}[profile.to_client]\nloss = 0.1\nreorder = 3\n"
        ));
        assert_eq!((line, column), (5, 11), "{reason}");
        assert!(reason.contains("to_client.reorder"), "{reason}");
        // The model's own check names the burst; the key stands in the
        // one-direction table, the loss it conflicts with among the keys
        // for both.
        let (line, _, reason) = refused(&format!(
            "{HEAD}loss = 0.6\nto_server = {{ burst = 1.2 }}\n"
        ));
        assert_eq!(line, 4, "{reason}");
        assert!(
            reason.starts_with("profile \"a\": to_server.burst = 1.2"),
            "{reason}"
        );
        // A delay for both directions, refused once, where it was written.
        let (line, column, reason) = refused(&format!("{HEAD}loss = 0.1\ndelay_ms = -5\n"));
        assert_eq!((line, column), (4, 12), "{reason}");
        assert!(
            reason.contains("delay_ms must be a number of milliseconds"),
            "{reason}"
        );
    }

    #[test]
    fn the_keys_for_one_end_are_no_suite_keys() {
        for key in ["loss_in", "loss_out", "netem_seed"] {
            let (line, column, reason) = refused(&format!("{HEAD}{key} = 0.1\n"));
            assert_eq!((line, column), (3, 1), "{reason}");
            assert!(
                reason.starts_with(&format!("unknown field `{key}`")),
                "{reason}"
            );
        }
    }

    #[test]
    fn one_direction_overrides_both_key_by_key() {
        let text = format!("{HEAD}loss = 0.1\ndelay_ms = 2\nto_client = {{ loss = 0.3 }}\n");
        let suite = Suite::parse(&text, Path::new("t.toml")).unwrap();
        let link = &suite.profiles[0].impairment;
        assert_eq!((link.to_client.loss, link.to_server.loss), (0.3, 0.1));
        assert_eq!(link.to_client.delay, Duration::from_millis(2));
        assert_eq!(link.to_server.delay, Duration::from_millis(2));
    }
}
