//! Whether an addon lands on an instance group: its `include` and `exclude` placement rules.
//!
//! Each rule is an "any of" list; the rules an `include` gives must all match for the addon
//! to apply (no `include`, or an empty one, applies everywhere), and an `exclude` whose given
//! rules all match keeps it off (an empty `exclude` excludes nothing). A job rule matches a
//! group running that job from that release; a stemcell rule matches the group's stemcell OS.
//! rosh has no teams, so a deployment belongs to none: a `teams` include never matches and a
//! `teams` exclude never excludes. A rule still holding a `((variable))` is an error.

use crate::manifest::model::{Lifecycle, Param, Placement};

/// What the rules look at.
pub(crate) struct GroupFacts<'a> {
    pub deployment: &'a str,
    pub group: &'a str,
    /// `(job, release)` of the group's own jobs.
    pub jobs: Vec<(&'a str, &'a str)>,
    pub stemcell_os: Option<&'a str>,
    pub networks: Vec<&'a str>,
    pub azs: &'a [String],
    pub lifecycle: Lifecycle,
}

/// Whether the addon with these rules applies to the group; `Err` names an unresolved rule.
pub(crate) fn applies(
    include: Option<&Placement>,
    exclude: Option<&Placement>,
    g: &GroupFacts<'_>,
) -> Result<bool, String> {
    let included = match include {
        None => true,
        Some(p) => matches(p, g)?.unwrap_or(true),
    };
    let excluded = match exclude {
        None => false,
        Some(p) => matches(p, g)?.unwrap_or(false),
    };
    Ok(included && !excluded)
}

/// `None` when the placement gives no rule at all; otherwise whether every given rule matches.
fn matches(p: &Placement, g: &GroupFacts<'_>) -> Result<Option<bool>, String> {
    let mut given = false;
    let mut all = true;
    let mut rule = |hit: Option<bool>| {
        if let Some(hit) = hit {
            given = true;
            all &= hit;
        }
    };
    let list = |name: &str, p: &Param<Vec<String>>| -> Result<Option<Vec<String>>, String> {
        match p {
            Param::Literal(v) if v.is_empty() => Ok(None),
            Param::Literal(v) => Ok(Some(v.clone())),
            Param::Var(v) => Err(format!("{name}: variable {v} was not interpolated")),
        }
    };
    rule(list("deployments", &p.deployments)?.map(|v| v.iter().any(|d| d == g.deployment)));
    rule(list("instance_groups", &p.instance_groups)?.map(|v| v.iter().any(|n| n == g.group)));
    rule(list("networks", &p.networks)?.map(|v| v.iter().any(|n| g.networks.contains(&n.as_str()))));
    rule(list("azs", &p.azs)?.map(|v| v.iter().any(|a| g.azs.contains(a))));
    rule(list("teams", &p.teams)?.map(|_| false));
    if !p.stemcell.is_empty() {
        rule(Some(p.stemcell.iter().any(|os| Some(os.as_str()) == g.stemcell_os)));
    }
    if !p.jobs.is_empty() {
        rule(Some(p.jobs.iter().any(|r| g.jobs.iter().any(|(j, rel)| *j == r.name && *rel == r.release))));
    }
    match &p.lifecycle {
        None => {}
        Some(Param::Literal(l)) => rule(Some(*l == g.lifecycle)),
        Some(Param::Var(v)) => return Err(format!("lifecycle: variable {v} was not interpolated")),
    }
    Ok(given.then_some(all))
}
