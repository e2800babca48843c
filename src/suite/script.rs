//! A profile in the kernel scripts' vocabulary: the flags of
//! `netem/scripts/netns-impair.sh` that apply the same link, so the
//! simulator, the lossy-socket shim and the kernel's netem run one profile
//! from one suite file (`risp-udp netem-args --suite FILE --profile NAME`).
//!
//! The scripts apply one setting to both directions with `tc netem`, which
//! has no equivalent of a few model features; a profile using them is
//! refused with the reasons, never approximated silently.

use std::time::Duration;

use risp_netem::{DirectionConfig, ImpairmentSpec};

use super::profile::Profile;
use crate::stats::duration_to_ms;

impl Profile {
    /// The `netns-impair.sh` flags that apply this profile's link, or every
    /// reason it cannot be applied by the kernel scripts.
    pub fn script_flags(&self) -> Result<Vec<String>, Vec<String>> {
        let imp = &self.impairment;
        let mut refused = Vec::new();
        if imp.to_client != imp.to_server {
            refused.push(
                "to_client and to_server differ: the scripts apply one setting to both directions"
                    .to_string(),
            );
        }
        if !imp.blackholes.is_empty() {
            refused.push("blackhole: the scripts have no scheduled outages".to_string());
        }
        if !imp.rebind_at.is_empty() {
            refused.push("rebind_at_ms: the scripts cannot move the client's address".to_string());
        }
        let d = &imp.to_client;
        if d.burst > 1.0 {
            refused.push(
                "burst: the scripts drop independently (no Gilbert-Elliott loss)".to_string(),
            );
        }
        if d.reorder > 0.0 {
            refused.push(
                "reorder: the model holds a datagram back, the kernel's netem sends one early; \
                 they are not the same impairment"
                    .to_string(),
            );
        }
        let flags = direction_flags(d, &mut refused);
        if refused.is_empty() {
            Ok(flags)
        } else {
            Err(refused)
        }
    }
}

/// The flags of one direction; what cannot be expressed goes to `refused`.
fn direction_flags(d: &DirectionConfig, refused: &mut Vec<String>) -> Vec<String> {
    let some = |p: f64| (p > 0.0).then_some(p);
    let mut spec = ImpairmentSpec {
        loss: some(d.loss),
        duplicate: some(d.duplicate),
        corrupt: some(d.corrupt),
        ..ImpairmentSpec::default()
    };
    // The model adds a uniform [0, jitter] to `delay`; netem's `delay D J`
    // varies D by ±J: the same spread is D = delay + jitter/2, J = jitter/2.
    let half_jitter = d.jitter / 2;
    let delay = d.delay + half_jitter;
    if !delay.is_zero() {
        match (whole_ms(delay), whole_ms(half_jitter)) {
            (Some(delay_ms), Some(jitter_ms)) => {
                spec.delay_ms = Some(delay_ms as f64);
                spec.jitter_ms = (jitter_ms > 0).then_some(jitter_ms as f64);
            }
            _ => refused.push(format!(
                "delay_ms {} / jitter_ms {}: the scripts take whole milliseconds \
                 (delay + jitter/2 and jitter/2)",
                duration_to_ms(d.delay),
                duration_to_ms(d.jitter)
            )),
        }
    }
    spec.to_args()
}

/// `d` in whole milliseconds, if it is one.
fn whole_ms(d: Duration) -> Option<u64> {
    (d.as_nanos() % 1_000_000 == 0).then(|| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Suite, STANDARD_SUITE};

    fn flags(name: &str) -> Result<Vec<String>, Vec<String>> {
        let suite = Suite::parse(STANDARD_SUITE, Path::new("builtin")).unwrap();
        let p = suite.profiles.iter().find(|p| p.name == name).unwrap();
        p.script_flags()
    }

    #[test]
    fn standard_profiles_translate_or_say_why_not() {
        assert_eq!(flags("clean"), Ok(vec!["--delay-ms".into(), "1".into()]));
        assert_eq!(
            flags("loss-10"),
            Ok(["--loss", "0.1", "--delay-ms", "1"]
                .map(String::from)
                .to_vec())
        );
        // Model: 50 ms + uniform [0, 10] ms; netem: 55 ms ± 5 ms.
        assert_eq!(
            flags("delay-50-jitter"),
            Ok(["--delay-ms", "55", "--jitter-ms", "5"]
                .map(String::from)
                .to_vec())
        );
        for (name, why) in [
            ("burst-5x4", "burst"),
            ("reorder", "reorder"),
            ("blackhole-5s", "blackhole"),
            ("rebind", "rebind_at_ms"),
        ] {
            let reasons = flags(name).expect_err(name);
            assert!(
                reasons.iter().any(|r| r.starts_with(why)),
                "{name}: {reasons:?}"
            );
        }
    }
}
