//! Which channels exist: the signaling endpoint asks a [`ChannelDirectory`] when a peer joins.

use std::collections::HashMap;
use std::sync::RwLock;

pub use signaling::protocol::ChannelInfo;

/// Where the signaling endpoint learns which channels exist and what peers need to know about
/// them. The channel registry implements it; [`StaticDirectory`] serves a fixed list.
pub trait ChannelDirectory: Send + Sync + 'static {
    /// The channel called `name` (already validated), if it exists.
    fn lookup(&self, name: &str) -> Option<ChannelInfo>;
}

/// A directory filled from configuration, optionally accepting any channel name.
#[derive(Debug, Default)]
pub struct StaticDirectory {
    channels: RwLock<HashMap<String, ChannelInfo>>,
    any: bool,
}

impl StaticDirectory {
    /// An empty directory; with `any`, unknown names resolve to a channel with no key.
    pub fn new(any: bool) -> Self {
        StaticDirectory {
            channels: RwLock::new(HashMap::new()),
            any,
        }
    }

    /// Adds or replaces a channel.
    pub fn insert(&self, name: impl Into<String>, info: ChannelInfo) {
        let mut map = self.channels.write().unwrap_or_else(|e| e.into_inner());
        map.insert(name.into(), info);
    }
}

impl ChannelDirectory for StaticDirectory {
    fn lookup(&self, name: &str) -> Option<ChannelInfo> {
        let map = self.channels.read().unwrap_or_else(|e| e.into_inner());
        match map.get(name) {
            Some(info) => Some(info.clone()),
            None if self.any => Some(ChannelInfo::default()),
            None => None,
        }
    }
}
