//! What a VEN client may see (`Definition.md`, "Object Privacy"):
//!
//! - BL clients see every object.
//! - A VEN client sees the `ven`, `resource`, `report` and `subscription`
//!   objects whose clientID is its own, and nothing else of those kinds.
//! - Programs and events: the VTN finds the VEN objects of the caller's
//!   clientID and collects the targets *granted* to it — the targets BL
//!   wrote on those VENs and their resources, the VENs' names, and for a
//!   gridlink VEN the groups it is in ([`crate::store::VtnStore::grants`]).
//!   Without `targets` in the query a VEN sees the objects without targets
//!   and those with a granted target; with `targets`, the objects with one
//!   of the query's targets that is also granted (none if no query target is
//!   granted).
//! - Target hiding: a VEN is shown only the targets of a program or event
//!   that it was granted.
//!
//! A client with no VEN object therefore sees only untargeted programs and
//! events.

use std::collections::BTreeSet;

use gridlink_protocol::ObjectId;

use crate::api::{ApiError, AppState, now_ms};
use crate::store::Store;
use crate::store::vtn::{ObjectKind, VtnObject};

use super::VtnCaller;

/// The target rule of one search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetScope {
    /// BL: no restriction beyond the query's own `targets` filter.
    All,
    /// A VEN that named no targets: untargeted objects and those with one
    /// of these (granted) targets.
    Granted(Vec<String>),
    /// A VEN that named targets: objects with one of these (the query's
    /// targets that are granted; empty: nothing).
    Named(Vec<String>),
}

impl TargetScope {
    /// The targets of an object that the caller may be shown.
    pub(crate) fn shown(&self, targets: &[String]) -> Vec<String> {
        match self {
            Self::All => targets.to_vec(),
            Self::Granted(granted) | Self::Named(granted) => targets
                .iter()
                .filter(|t| granted.contains(t))
                .cloned()
                .collect(),
        }
    }

    /// Whether the caller may read an object with these targets.
    pub(crate) fn admits(&self, targets: &[String]) -> bool {
        match self {
            Self::All => true,
            Self::Granted(granted) => {
                targets.is_empty() || targets.iter().any(|t| granted.contains(t))
            }
            Self::Named(named) => targets.iter().any(|t| named.contains(t)),
        }
    }
}

/// The targets granted to a VEN client (every gridlink VEN is given its
/// `ven` object first, so an agent's own client sees its events).
pub(crate) async fn grants<S: Store>(
    state: &AppState<S>,
    client_id: &str,
) -> Result<Vec<String>, ApiError> {
    state.store.sync_agents(now_ms()).await?;
    Ok(state.store.grants(client_id).await?)
}

/// The target rule of a search of programs or events by `caller` with the
/// query's `targets`.
pub(crate) async fn scope<S: Store>(
    state: &AppState<S>,
    caller: &VtnCaller,
    query_targets: &[String],
) -> Result<TargetScope, ApiError> {
    let VtnCaller::Ven { client_id } = caller else {
        return Ok(TargetScope::All);
    };
    let granted = grants(state, client_id).await?;
    if query_targets.is_empty() {
        return Ok(TargetScope::Granted(granted));
    }
    let granted: BTreeSet<&String> = granted.iter().collect();
    Ok(TargetScope::Named(
        query_targets
            .iter()
            .filter(|t| granted.contains(t))
            .cloned()
            .collect(),
    ))
}

/// The owner filter of a search of VEN-owned objects: `None` for BL, the
/// caller's clientID for a VEN.
pub(crate) fn owner(caller: &VtnCaller) -> Option<String> {
    match caller {
        VtnCaller::Bl { .. } => None,
        VtnCaller::Ven { client_id } => Some(client_id.clone()),
    }
}

/// Whether `caller` may read (and, for a VEN, write) an object owned by
/// `client_id`.
pub(crate) fn owns(caller: &VtnCaller, client_id: Option<&str>) -> bool {
    match caller {
        VtnCaller::Bl { .. } => true,
        VtnCaller::Ven { client_id: mine } => client_id == Some(mine.as_str()),
    }
}

/// The object `id` of `kind` if `caller` may read it (else 404).
pub(crate) async fn owned<S: Store>(
    state: &AppState<S>,
    caller: &VtnCaller,
    kind: ObjectKind,
    id: ObjectId,
) -> Result<VtnObject, ApiError> {
    if kind == ObjectKind::Ven || kind == ObjectKind::Resource {
        state.store.sync_agents(now_ms()).await?;
    }
    match state.store.object(kind, &id).await? {
        Some(record) if owns(caller, record.client_id.as_deref()) => Ok(record),
        _ => Err(ApiError::UnknownObject(kind.noun(), id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn target_rules() {
        let granted = TargetScope::Granted(s(&["g1", "ven-a"]));
        assert!(granted.admits(&[]));
        assert!(granted.admits(&s(&["g2", "g1"])));
        assert!(!granted.admits(&s(&["g2"])));
        assert_eq!(granted.shown(&s(&["g2", "g1"])), s(&["g1"]));
        let named = TargetScope::Named(s(&["g1"]));
        assert!(!named.admits(&[]));
        assert!(named.admits(&s(&["g1"])));
        assert!(!TargetScope::Named(Vec::new()).admits(&s(&["g1"])));
        assert_eq!(TargetScope::All.shown(&s(&["x"])), s(&["x"]));
        let ven = VtnCaller::Ven {
            client_id: "c".into(),
        };
        assert!(owns(&ven, Some("c")));
        assert!(!owns(&ven, Some("d")));
        assert!(!owns(&ven, None));
        assert_eq!(owner(&ven).as_deref(), Some("c"));
    }
}
