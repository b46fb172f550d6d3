//! Target expressions: which nodes an operation applies to.
//!
//! Syntax (CLI.md "Targets"): a *term* is a node id, `tag:KEY=VALUE` (VALUE may be a comma
//! list, any one matches), `tag:KEY` (any value), `group:NAME` (a saved target query) or
//! `all`. A term prefixed with `!` must not hold; terms joined by `&` must all hold. One
//! [`Target`] is such an intersection; several targets (several `--target` flags, or a group's
//! list) are a union.
//!
//! Invariants: a `Target` holds at least one literal; `Display` writes what `FromStr` reads back
//! to the same value; `&` and `!` never occur inside a tag key or value (tags refuse both, so
//! the separators are unambiguous). An intersection of negations only (`!tag:canary`) starts
//! from every node: it means "every node except". Deregistered nodes are never targeted, not
//! even by a negation.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::{Node, NodeId, NodeStatus, tag};

/// One term: a set of nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Node(NodeId),
    /// `values` empty means any value.
    Tag {
        key: String,
        values: Vec<String>,
    },
    Group(String),
    All,
}

/// A term or its negation (`!term`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    pub negated: bool,
    pub term: Term,
}

/// One target expression: literals joined by `&`, all of which must hold. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    literals: Vec<Literal>,
}

impl Target {
    /// The intersection of `literals`; None when there are none (an empty target would be
    /// ambiguous between "nothing" and "everything").
    pub fn new(literals: Vec<Literal>) -> Option<Target> {
        (!literals.is_empty()).then_some(Target { literals })
    }

    /// The target of one term.
    pub fn term(term: Term) -> Target {
        Target { literals: vec![Literal { negated: false, term }] }
    }

    /// `group:NAME`.
    pub fn group(name: impl Into<String>) -> Target {
        Target::term(Term::Group(name.into()))
    }

    pub fn literals(&self) -> &[Literal] {
        &self.literals
    }
}

/// Why a target expression was refused or could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "invalid target `{input}`: {reason}; use a node id, tag:KEY=VALUE, tag:KEY, group:NAME or all, \
         joined by & (all must hold), each optionally prefixed by ! (must not hold)"
    )]
    Invalid { input: String, reason: String },
    #[error("unknown group `{0}`: list groups with `flotilla groups ls`")]
    UnknownGroup(String),
    #[error("group `{0}` refers to itself through its targets")]
    GroupCycle(String),
}

fn invalid(input: &str, reason: impl Into<String>) -> TargetError {
    TargetError::Invalid { input: input.to_owned(), reason: reason.into() }
}

/// Valid group names: 1..=64 of letters, digits, `_ . -`.
pub fn validate_group_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a group name has 1 to 64 characters".into());
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err("a group name uses letters, digits, _ . and - only".into());
    }
    Ok(())
}

/// Parses one term (no `&`, no leading `!`); the error is the reason only.
fn parse_term(s: &str) -> Result<Term, String> {
    if s == "all" {
        return Ok(Term::All);
    }
    if let Some(rest) = s.strip_prefix("tag:") {
        let (key, values) = match rest.split_once('=') {
            Some((k, v)) => (k, v.split(',').map(str::to_owned).collect::<Vec<String>>()),
            None => (rest, Vec::new()),
        };
        if key.is_empty() {
            return Err("the tag key is empty".into());
        }
        if rest.contains('!') {
            return Err("`!` may only start a term: tag keys and values cannot contain `&` or `!`".into());
        }
        tag::validate_key(key).map_err(|e| e.to_string())?;
        for value in &values {
            tag::validate(key, value).map_err(|e| e.to_string())?;
        }
        return Ok(Term::Tag { key: key.to_owned(), values });
    }
    if let Some(name) = s.strip_prefix("group:") {
        validate_group_name(name)?;
        return Ok(Term::Group(name.to_owned()));
    }
    if s.starts_with("n-") {
        return s.parse().map(Term::Node).map_err(|e: crate::NodeIdError| e.to_string());
    }
    if s != s.trim() {
        return Err(format!("`{s}` is not a term: write no spaces around `&` and `!`"));
    }
    Err(format!("`{s}` is not a recognised term"))
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut literals = Vec::new();
        let mut previous_was_tag = false;
        for piece in s.split('&') {
            if piece.is_empty() {
                let reason = if s.is_empty() { "it is empty" } else { "a term is empty (`&` at an end, or `&&`)" };
                return Err(invalid(s, reason));
            }
            let (negated, body) = match piece.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, piece),
            };
            if body.is_empty() {
                return Err(invalid(s, "`!` must be followed by a term"));
            }
            if body.starts_with('!') {
                return Err(invalid(s, "a term takes at most one `!`"));
            }
            let term = parse_term(body).map_err(|reason| {
                if previous_was_tag {
                    // `tag:k=a&b`: most likely a value meant to hold `&`.
                    invalid(s, format!("{reason} (`&` joins terms: tag keys and values cannot contain `&`)"))
                } else {
                    invalid(s, reason)
                }
            })?;
            previous_was_tag = matches!(term, Term::Tag { .. });
            literals.push(Literal { negated, term });
        }
        Ok(Target { literals })
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Node(id) => write!(f, "{id}"),
            Term::Tag { key, values } if values.is_empty() => write!(f, "tag:{key}"),
            Term::Tag { key, values } => write!(f, "tag:{key}={}", values.join(",")),
            Term::Group(name) => write!(f, "group:{name}"),
            Term::All => f.write_str("all"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, literal) in self.literals.iter().enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            if literal.negated {
                f.write_str("!")?;
            }
            write!(f, "{}", literal.term)?;
        }
        Ok(())
    }
}

/// Resolves a union of targets against the known nodes, in `nodes` order. `group` looks up a
/// saved group's targets; groups may nest, cycles and unknown groups are refused (also when
/// `nodes` is empty, which is how a group is checked before it is saved). Deregistered nodes
/// never match.
pub fn resolve<'n>(
    targets: &[Target],
    nodes: &'n [Node],
    group: &dyn Fn(&str) -> Option<Vec<Target>>,
) -> Result<Vec<&'n Node>, TargetError> {
    let mut resolver = Resolver { nodes, group, groups: HashMap::new(), path: Vec::new() };
    let picked = resolver.union(targets)?;
    Ok(nodes.iter().zip(picked).filter(|(_, p)| *p).map(|(n, _)| n).collect())
}

/// Sets of nodes as membership flags indexed like `nodes`; each group's set is computed once,
/// so nested and repeated groups cost no more than their size.
struct Resolver<'a> {
    nodes: &'a [Node],
    group: &'a dyn Fn(&str) -> Option<Vec<Target>>,
    groups: HashMap<String, Vec<bool>>,
    path: Vec<String>,
}

impl Resolver<'_> {
    fn union(&mut self, targets: &[Target]) -> Result<Vec<bool>, TargetError> {
        let mut out = vec![false; self.nodes.len()];
        for target in targets {
            for (o, m) in out.iter_mut().zip(self.intersection(target)?) {
                *o |= m;
            }
        }
        Ok(out)
    }

    fn intersection(&mut self, target: &Target) -> Result<Vec<bool>, TargetError> {
        // Starting from every targetable node is what makes a lone negation "all except".
        let mut out: Vec<bool> = self.nodes.iter().map(|n| n.status != NodeStatus::Deregistered).collect();
        for literal in &target.literals {
            let set = self.term(&literal.term)?;
            for (o, m) in out.iter_mut().zip(set) {
                *o &= m != literal.negated;
            }
        }
        Ok(out)
    }

    fn term(&mut self, term: &Term) -> Result<Vec<bool>, TargetError> {
        let nodes = self.nodes;
        Ok(match term {
            Term::All => vec![true; nodes.len()],
            Term::Node(id) => nodes.iter().map(|n| &n.id == id).collect(),
            Term::Tag { key, values } => {
                nodes.iter().map(|n| n.tags.get(key).is_some_and(|v| values.is_empty() || values.contains(v))).collect()
            }
            Term::Group(name) => {
                if let Some(set) = self.groups.get(name) {
                    return Ok(set.clone());
                }
                if self.path.contains(name) {
                    return Err(TargetError::GroupCycle(name.clone()));
                }
                let members = (self.group)(name).ok_or_else(|| TargetError::UnknownGroup(name.clone()))?;
                self.path.push(name.clone());
                let set = self.union(&members)?;
                self.path.pop();
                self.groups.insert(name.clone(), set.clone());
                set
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Platform, Tags};
    use proptest::prelude::*;

    fn node(n: u8, status: NodeStatus, tags: &[(&str, &str)]) -> Node {
        Node {
            id: NodeId::from_random([n; 9]),
            hostname: format!("host{n}"),
            status,
            last_seen: None,
            platform: Platform::default(),
            kernel: String::new(),
            arch: String::new(),
            agent_version: String::new(),
            addresses: vec![],
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Tags>(),
            activation_id: String::new(),
            registered_at: 0,
            cert_fingerprint: String::new(),
        }
    }

    fn tag(key: &str, values: &[&str]) -> Term {
        Term::Tag { key: key.into(), values: values.iter().map(|v| v.to_string()).collect() }
    }

    fn yes(term: Term) -> Literal {
        Literal { negated: false, term }
    }

    fn not(term: Term) -> Literal {
        Literal { negated: true, term }
    }

    #[test]
    fn parse_table() {
        let id: NodeId = "n-0123456789abcdef0".parse().expect("valid id");
        let ok = [
            ("all", vec![yes(Term::All)]),
            ("tag:env=prod", vec![yes(tag("env", &["prod"]))]),
            ("tag:env=prod,staging", vec![yes(tag("env", &["prod", "staging"]))]),
            ("tag:env", vec![yes(tag("env", &[]))]),
            ("tag:env=", vec![yes(tag("env", &[""]))]),
            ("tag:Patch Group=web", vec![yes(tag("Patch Group", &["web"]))]),
            ("group:web-servers", vec![yes(Term::Group("web-servers".into()))]),
            ("n-0123456789abcdef0", vec![yes(Term::Node(id.clone()))]),
            ("tag:env=prod&tag:role=web", vec![yes(tag("env", &["prod"])), yes(tag("role", &["web"]))]),
            ("tag:env=prod&!tag:canary", vec![yes(tag("env", &["prod"])), not(tag("canary", &[]))]),
            ("!tag:canary", vec![not(tag("canary", &[]))]),
            ("!n-0123456789abcdef0", vec![not(Term::Node(id))]),
            (
                "group:webs&!group:canaries&all",
                vec![yes(Term::Group("webs".into())), not(Term::Group("canaries".into())), yes(Term::All)],
            ),
            ("tag:a=b=c", vec![yes(tag("a", &["b=c"]))]),
        ];
        for (input, want) in ok {
            let got: Target = input.parse().expect(input);
            assert_eq!(got.literals(), want.as_slice(), "{input}");
            assert_eq!(got.to_string(), input, "round trip");
        }
        let bad = [
            ("", "it is empty"),
            ("everything", "not a recognised term"),
            ("tag:", "tag key is empty"),
            ("tag:=prod", "tag key is empty"),
            ("group:", "1 to 64"),
            ("group:a b", "letters, digits"),
            ("n-xyz", "n-xyz"),
            ("tag:env=pr;od", "not allowed"),
            ("i-0123", "not a recognised term"),
            ("&tag:env=prod", "`&` at an end"),
            ("tag:env=prod&", "`&` at an end"),
            ("tag:env=prod&&tag:role=web", "`&&`"),
            ("!", "`!` must be followed by a term"),
            ("tag:env=prod&!", "`!` must be followed by a term"),
            ("!!tag:canary", "at most one `!`"),
            ("tag:env=a&b", "tag keys and values cannot contain `&`"),
            ("tag:team=R&D", "tag keys and values cannot contain `&`"),
            ("tag:env=pr!od", "cannot contain `&` or `!`"),
            ("tag:e!nv=prod", "cannot contain `&` or `!`"),
            ("tag:env=prod & tag:role=web", "no spaces around"),
        ];
        for (input, reason) in bad {
            let err = input.parse::<Target>().expect_err(input).to_string();
            assert!(err.starts_with(&format!("invalid target `{input}`")), "{input}: {err}");
            assert!(err.contains(reason), "{input}: want `{reason}` in: {err}");
        }
    }

    #[test]
    fn resolution() {
        let nodes = vec![
            node(1, NodeStatus::Online, &[("env", "prod"), ("role", "web")]),
            node(2, NodeStatus::ConnectionLost, &[("env", "staging"), ("role", "web")]),
            node(3, NodeStatus::Online, &[("env", "prod"), ("role", "db")]),
            node(4, NodeStatus::Deregistered, &[("env", "prod")]),
            node(5, NodeStatus::Online, &[("env", "prod"), ("role", "web"), ("canary", "")]),
        ];
        let groups = |name: &str| match name {
            "webs" => Some(vec!["tag:role=web".parse().expect("valid")]),
            "web-prod" => Some(vec!["tag:role=web&tag:env=prod".parse().expect("valid")]),
            "stable-web-prod" => Some(vec!["group:web-prod&!tag:canary".parse().expect("valid")]),
            "loop" => Some(vec![Target::group("loop")]),
            "loop-a" => Some(vec!["all&!group:loop-b".parse().expect("valid")]),
            "loop-b" => Some(vec!["group:loop-a".parse().expect("valid")]),
            _ => None,
        };
        let ids = |targets: &[&str]| -> Result<Vec<String>, TargetError> {
            let parsed: Vec<Target> = targets.iter().map(|t| t.parse().expect("valid")).collect();
            Ok(resolve(&parsed, &nodes, &groups)?.iter().map(|n| n.hostname.clone()).collect())
        };
        let hosts = |h: &[&str]| -> Result<Vec<String>, TargetError> { Ok(h.iter().map(|s| s.to_string()).collect()) };
        type Case<'a> = (&'a [&'a str], Result<Vec<String>, TargetError>);
        let table: &[Case] = &[
            (&["all"], hosts(&["host1", "host2", "host3", "host5"])),
            (&["tag:env=prod"], hosts(&["host1", "host3", "host5"])),
            (&["tag:env=prod,staging", "tag:role=db"], hosts(&["host1", "host2", "host3", "host5"])),
            (&["tag:role"], hosts(&["host1", "host2", "host3", "host5"])),
            (&["group:webs"], hosts(&["host1", "host2", "host5"])),
            (&["tag:env=prod&tag:role=web"], hosts(&["host1", "host5"])),
            (&["tag:env=prod&!tag:canary"], hosts(&["host1", "host3"])),
            (&["!tag:canary"], hosts(&["host1", "host2", "host3"])),
            (&["!tag:env=prod"], hosts(&["host2"])),
            (&["!all"], hosts(&[])),
            (&["tag:env=staging&tag:role=db"], hosts(&[])),
            (&["tag:env=prod&tag:role=db", "tag:env=staging&tag:role=web"], hosts(&["host2", "host3"])),
            (&["group:web-prod"], hosts(&["host1", "host5"])),
            (&["group:stable-web-prod"], hosts(&["host1"])),
            (&["!group:web-prod"], hosts(&["host2", "host3"])),
            (&["group:nope"], Err(TargetError::UnknownGroup("nope".into()))),
            (&["all&!group:nope"], Err(TargetError::UnknownGroup("nope".into()))),
            (&["group:loop"], Err(TargetError::GroupCycle("loop".into()))),
            (&["group:loop-a"], Err(TargetError::GroupCycle("loop-a".into()))),
        ];
        for (targets, want) in table {
            assert_eq!(&ids(targets), want, "{targets:?}");
        }
        assert_eq!(ids(&[nodes[2].id.as_str()]), hosts(&["host3"]));
        assert_eq!(ids(&[nodes[3].id.as_str()]), hosts(&[]), "deregistered nodes are never targeted");
        let not_four = format!("!{}", nodes[3].id);
        assert_eq!(ids(&[&not_four]), hosts(&["host1", "host2", "host3", "host5"]), "nor by a negation");
    }

    #[test]
    fn nested_groups_are_resolved_once_each() {
        // g0 = g1 | g1, g1 = g2 | g2, ...: expanding the tree would take 2^40 steps.
        let groups = |name: &str| -> Option<Vec<Target>> {
            let n: u32 = name.strip_prefix('g')?.parse().ok()?;
            if n == 40 {
                return Some(vec![Target::term(Term::All)]);
            }
            let next = Target::group(format!("g{}", n + 1));
            Some(vec![next.clone(), next])
        };
        let nodes = vec![node(1, NodeStatus::Online, &[])];
        assert_eq!(resolve(&[Target::group("g0")], &nodes, &groups).map(|v| v.len()), Ok(1));
    }

    fn arb_term() -> impl Strategy<Value = Term> {
        let key = "[a-zA-Z0-9 _.:/+@-]{1,12}".prop_filter("reserved prefixes", |k| {
            let k = k.to_ascii_lowercase();
            !k.starts_with("aws:") && !k.starts_with("flotilla:")
        });
        let value = "[a-zA-Z0-9 _.:/=+@-]{0,12}";
        prop_oneof![
            Just(Term::All),
            any::<[u8; 9]>().prop_map(|b| Term::Node(NodeId::from_random(b))),
            (key, proptest::collection::vec(value, 0..4)).prop_map(|(key, values)| Term::Tag { key, values }),
            "[a-zA-Z0-9_.-]{1,64}".prop_map(Term::Group),
        ]
    }

    fn arb_target(term: impl Strategy<Value = Term>) -> impl Strategy<Value = Target> {
        proptest::collection::vec((any::<bool>(), term).prop_map(|(negated, term)| Literal { negated, term }), 1..5)
            .prop_map(|literals| Target::new(literals).expect("at least one literal"))
    }

    /// The set-builder definition, node by node: eligible, and some target whose every
    /// literal holds. Groups g0..g2 are defined in terms of tags and lower-numbered groups only.
    fn model(targets: &[Target], node: &Node, groups: &dyn Fn(&str) -> Option<Vec<Target>>) -> bool {
        fn holds(term: &Term, node: &Node, groups: &dyn Fn(&str) -> Option<Vec<Target>>) -> bool {
            match term {
                Term::All => true,
                Term::Node(id) => &node.id == id,
                Term::Tag { key, values } => {
                    node.tags.get(key).is_some_and(|v| values.is_empty() || values.iter().any(|x| x == v))
                }
                Term::Group(name) => model(&groups(name).unwrap_or_default(), node, groups),
            }
        }
        node.status != NodeStatus::Deregistered
            && targets.iter().any(|t| t.literals().iter().all(|l| holds(&l.term, node, groups) != l.negated))
    }

    fn fleet_term(ids: Vec<NodeId>, max_group: u8) -> impl Strategy<Value = Term> {
        let keys = prop_oneof![Just("env"), Just("role"), Just("canary")];
        let values = proptest::collection::vec(prop_oneof![Just("prod"), Just("web"), Just("db"), Just("")], 0..3);
        prop_oneof![
            Just(Term::All),
            proptest::sample::select(ids).prop_map(Term::Node),
            (keys, values).prop_map(|(key, values)| Term::Tag {
                key: key.into(),
                values: values.into_iter().map(str::to_owned).collect()
            }),
            (0..max_group.max(1)).prop_map(move |g| if max_group == 0 {
                Term::All
            } else {
                Term::Group(format!("g{g}"))
            }),
        ]
    }

    fn arb_fleet() -> impl Strategy<Value = Vec<Node>> {
        let status =
            prop_oneof![Just(NodeStatus::Online), Just(NodeStatus::ConnectionLost), Just(NodeStatus::Deregistered)];
        let value = prop_oneof![Just("prod"), Just("staging"), Just("web"), Just("db"), Just("")];
        let tags = proptest::collection::btree_map(prop_oneof![Just("env"), Just("role"), Just("canary")], value, 0..3);
        proptest::collection::vec((status, tags), 0..12).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (status, tags))| {
                    let tags: Vec<(&str, &str)> = tags.into_iter().collect();
                    node(u8::try_from(i).unwrap_or(u8::MAX), status, &tags)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(target in arb_target(arb_term())) {
            let text = target.to_string();
            prop_assert_eq!(text.parse::<Target>(), Ok(target), "{}", text);
        }

        #[test]
        fn resolution_equals_set_algebra(
            (nodes, groups, targets) in arb_fleet().prop_flat_map(|nodes| {
                let mut ids: Vec<NodeId> = nodes.iter().map(|n| n.id.clone()).collect();
                ids.push(NodeId::from_random([0xee; 9])); // a node id that is not in the fleet
                let groups = (
                    proptest::collection::vec(arb_target(fleet_term(ids.clone(), 0)), 1..3),
                    proptest::collection::vec(arb_target(fleet_term(ids.clone(), 1)), 1..3),
                    proptest::collection::vec(arb_target(fleet_term(ids.clone(), 2)), 1..3),
                );
                let targets = proptest::collection::vec(arb_target(fleet_term(ids, 3)), 1..4);
                (Just(nodes), groups, targets)
            })
        ) {
            let (g0, g1, g2) = groups;
            let lookup = |name: &str| match name {
                "g0" => Some(g0.clone()),
                "g1" => Some(g1.clone()),
                "g2" => Some(g2.clone()),
                _ => None,
            };
            let got: Vec<&NodeId> = resolve(&targets, &nodes, &lookup).expect("acyclic, known groups").iter().map(|n| &n.id).collect();
            let want: Vec<&NodeId> = nodes.iter().filter(|n| model(&targets, n, &lookup)).map(|n| &n.id).collect();
            prop_assert_eq!(got, want);
        }
    }
}
