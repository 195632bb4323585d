//! The cluster's API state during a run, and the watch events it sends.
//!
//! Holds the Services, the hand-written EndpointSlices, and the pods with
//! their lifecycle state; derives the slices of selector-based services
//! (unless the scenario wrote slices for that service itself). Every change
//! returns the watch events kube-proxy's informers would deliver: an update
//! only when the object really changed, with a new `resourceVersion`.

use std::collections::BTreeMap;

use proxier::k8s::{EndpointSlice, NamespacedName, Service};

use super::controller::{derive_slice, PodState};
use super::plan::{Node, Plan, Pod};
use super::spec::PodChangeSpec;

/// A watch event: the object's new state, or `None` when deleted.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Service(NamespacedName, Option<Box<Service>>),
    Slice(NamespacedName, Option<Box<EndpointSlice>>),
}

#[derive(Debug, Clone)]
pub struct ApiServer {
    services: BTreeMap<NamespacedName, Service>,
    explicit_slices: BTreeMap<NamespacedName, EndpointSlice>,
    pods: Vec<(Pod, PodState)>,
    nodes: Vec<Node>,
    /// The slices as last published (explicit and derived).
    published: BTreeMap<NamespacedName, EndpointSlice>,
    resource_version: u64,
}

impl ApiServer {
    pub fn new(plan: &Plan) -> Self {
        let mut api = ApiServer {
            services: plan
                .services
                .iter()
                .map(|s| (s.name.clone(), s.clone()))
                .collect(),
            explicit_slices: plan
                .endpoint_slices
                .iter()
                .map(|s| (s.name.clone(), s.clone()))
                .collect(),
            pods: plan
                .pods
                .iter()
                .map(|p| {
                    let state = PodState {
                        ready: p.ready,
                        terminating: false,
                        deleted: false,
                    };
                    (p.clone(), state)
                })
                .collect(),
            nodes: plan.nodes.clone(),
            published: BTreeMap::new(),
            resource_version: 0,
        };
        api.published = api.desired_slices();
        api
    }

    pub fn services(&self) -> Vec<Service> {
        self.services.values().cloned().collect()
    }

    pub fn slices(&self) -> Vec<EndpointSlice> {
        self.published.values().cloned().collect()
    }

    pub fn pods(&self) -> &[(Pod, PodState)] {
        &self.pods
    }

    fn desired_slices(&mut self) -> BTreeMap<NamespacedName, EndpointSlice> {
        let mut out = self.explicit_slices.clone();
        for svc in self.services.values() {
            let hand_written = self.explicit_slices.values().any(|s| {
                s.name.namespace == svc.name.namespace
                    && s.service_name.as_deref() == Some(svc.name.name.as_str())
            });
            if hand_written {
                continue;
            }
            if let Some(mut slice) = derive_slice(svc, &self.pods, &self.nodes) {
                // Keep the published version when nothing changed, so an
                // unchanged slice is not re-delivered as an update.
                match self.published.get(&slice.name) {
                    Some(old) if same_content(old, &slice) => {
                        slice.resource_version = old.resource_version.clone()
                    }
                    _ => {
                        self.resource_version += 1;
                        slice.resource_version = Some(self.resource_version.to_string());
                    }
                }
                out.insert(slice.name.clone(), slice);
            }
        }
        out
    }

    /// Re-derives slices and returns the slice events since the last call.
    fn republish(&mut self) -> Vec<Event> {
        let desired = self.desired_slices();
        let mut events = Vec::new();
        for (name, old) in &self.published {
            match desired.get(name) {
                None => events.push(Event::Slice(name.clone(), None)),
                Some(new) if new != old => {
                    events.push(Event::Slice(name.clone(), Some(Box::new(new.clone()))))
                }
                Some(_) => {}
            }
        }
        for (name, new) in &desired {
            if !self.published.contains_key(name) {
                events.push(Event::Slice(name.clone(), Some(Box::new(new.clone()))));
            }
        }
        self.published = desired;
        events
    }

    /// Creates or replaces objects.
    pub fn apply(&mut self, services: Vec<Service>, slices: Vec<EndpointSlice>) -> Vec<Event> {
        let mut events = Vec::new();
        for s in services {
            if self.services.get(&s.name) != Some(&s) {
                events.push(Event::Service(s.name.clone(), Some(Box::new(s.clone()))));
                self.services.insert(s.name.clone(), s);
            }
        }
        for s in slices {
            self.explicit_slices.insert(s.name.clone(), s);
        }
        events.extend(self.republish());
        events
    }

    /// Deletes objects by kind; unknown ones are an error naming them.
    pub fn delete(&mut self, kind: &str, name: &NamespacedName) -> Result<Vec<Event>, String> {
        let mut events = Vec::new();
        match kind {
            "Service" => {
                self.services
                    .remove(name)
                    .ok_or_else(|| format!("there is no Service {name} to delete"))?;
                events.push(Event::Service(name.clone(), None));
            }
            "EndpointSlice" => {
                self.explicit_slices.remove(name).ok_or_else(|| {
                    format!("there is no hand-written EndpointSlice {name} to delete")
                })?;
            }
            other => {
                return Err(format!(
                    "cannot delete a {other}; only Service and EndpointSlice"
                ))
            }
        }
        events.extend(self.republish());
        Ok(events)
    }

    /// Changes a pod's lifecycle state.
    pub fn set_pod(
        &mut self,
        name: &NamespacedName,
        change: impl FnOnce(&mut PodState),
    ) -> Vec<Event> {
        if let Some((_, state)) = self.pods.iter_mut().find(|(p, _)| &p.name == name) {
            change(state);
        }
        self.republish()
    }

    /// Applies a scenario step's pod change: the states it names are set,
    /// the others kept.
    pub fn change_pod(&mut self, change: &PodChangeSpec) -> Vec<Event> {
        let name = NamespacedName::new(&change.namespace, &change.name);
        self.set_pod(&name, |s| {
            if let Some(r) = change.ready {
                s.ready = r;
            }
            if let Some(t) = change.terminating {
                s.terminating = t;
            }
            if let Some(d) = change.deleted {
                s.deleted = d;
            }
        })
    }
}

/// Equal apart from the resource version.
fn same_content(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    let mut b = b.clone();
    b.resource_version = a.resource_version.clone();
    *a == b
}
