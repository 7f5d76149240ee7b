//! The development listener: plain MQTT on a loopback address, anonymous, for generic MQTT tools
//! and test suites (docs/mqtt.md).
//!
//! It is a broker of its own (a second rmqtt context), not a door into the device broker: rmqtt
//! keys sessions by client id across listeners, so an anonymous client sharing the device broker
//! could take over a device's or a person's session, subscriptions included, by presenting its
//! client id. Here no session, retained message or subscription of the device broker exists, and
//! Warden publishes nothing. On top of that, nobody may publish under `devices/` or subscribe
//! there, nor use the configured denied filters, so tools pointed at the wrong broker learn it at
//! once instead of seeing silence.

use std::net::SocketAddr;

use async_trait::async_trait;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::retain::DefaultRetainStorage;
use rmqtt::server::MqttServer;
use rmqtt::types::{PublishAclResult, SubscribeAclResult};
use tokio_util::sync::CancellationToken;

use crate::retain::MemoryRetain;
use crate::{BrokerError, TOPIC_ALIASES};

/// The filter every development listener denies: the devices' topics belong to the device broker.
const DEVICES: &str = "devices/#";

/// Topic filters nobody may publish to or subscribe within, checked at configuration time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeniedTopics(Vec<String>);

impl DeniedTopics {
    /// `devices/#` and `filters`; an error names the first filter that is not a valid MQTT topic
    /// filter.
    pub fn new(filters: &[String]) -> Result<Self, String> {
        let mut denied = vec![DEVICES.to_owned()];
        for filter in filters {
            if !valid_filter(filter) {
                return Err(format!("{filter:?} is not an MQTT topic filter"));
            }
            denied.push(filter.clone());
        }
        Ok(Self(denied))
    }

    /// Whether a publish to `topic` is denied.
    fn denies_topic(&self, topic: &str) -> bool {
        self.0.iter().any(|denied| covers(denied, topic))
    }

    /// Whether a subscription to `filter` is denied: every topic it could receive is denied.
    /// (A wider filter such as `#` is granted; it can never carry a denied topic, since nobody
    /// may publish one.)
    fn denies_filter(&self, filter: &str) -> bool {
        self.0.iter().any(|denied| covers(denied, filter))
    }
}

/// Whether a topic filter is well formed: not empty, no NUL, `#` only as the whole last level,
/// `+` only as a whole level.
fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(index, level)| {
        (*level == "#" && index == levels.len() - 1)
            || *level == "+"
            || !(level.contains('#') || level.contains('+'))
    })
}

/// Whether every topic `inner` (a topic or a filter) matches is matched by the filter `outer`.
/// Wildcards in the first level do not reach topics beginning with `$` (MQTT 3.1.1 4.7.2).
fn covers(outer: &str, inner: &str) -> bool {
    let mut outer_levels = outer.split('/');
    let mut inner_levels = inner.split('/');
    let mut first = true;
    loop {
        match (outer_levels.next(), inner_levels.next()) {
            (Some("#"), Some(level)) => return !(first && level.starts_with('$')),
            // `a/#` also matches `a` itself.
            (Some("#"), None) => return true,
            (Some("+"), Some(level)) => {
                if (first && level.starts_with('$')) || level == "#" {
                    return false;
                }
            }
            (Some(outer), Some(inner)) => {
                if outer != inner {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

#[derive(Clone)]
struct Hooks {
    denied: DeniedTopics,
}

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, parameter: &Parameter, accumulated: Option<HookResult>) -> ReturnType {
        match parameter {
            Parameter::ClientSubscribeCheckAcl(_, subscribe) => {
                let result = if self.denied.denies_filter(&subscribe.topic_filter) {
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                } else {
                    SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(_, message) => {
                let result = if self.denied.denies_topic(&message.topic) {
                    PublishAclResult::rejected(false, Some("this topic is denied here".into()))
                } else {
                    PublishAclResult::allow()
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            _ => (true, accumulated),
        }
    }
}

/// Serves the development listener on `address` until `shutdown`; returns the bound address and
/// the server future, which must be polled (spawn it).
pub async fn start_development(
    address: SocketAddr,
    denied: DeniedTopics,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, impl Future<Output = ()> + Send + 'static), BrokerError> {
    let context = ServerContext::new().busy_check_enable(false).build().await;
    *context.extends.retain_mut().await = Box::new(MemoryRetain(DefaultRetainStorage::new()));
    crate::shared::enable(&context).await;
    let registration = context.extends.hook_mgr().register();
    let hooks = Hooks { denied };
    for kind in [Type::ClientSubscribeCheckAcl, Type::MessagePublishCheckAcl] {
        registration.add(kind, Box::new(hooks.clone())).await;
    }
    registration.start().await;
    let listener = Builder::new()
        .name("warden/mqtt-development")
        .laddr(address)
        .nodelay(true)
        .max_topic_aliases(TOPIC_ALIASES)
        .allow_anonymous(true)
        .bind()
        .and_then(|builder| builder.tcp())
        .map_err(|error| BrokerError::Listen(format!("{address}: {error}")))?;
    let bound = listener
        .local_addr()
        .map_err(|error| BrokerError::Listen(error.to_string()))?;
    let server = MqttServer::new(context).listener_by_id(listener, 1).build();
    let serve = async move {
        let mut rmqtt = tokio::spawn(async move {
            if let Err(error) = server.run().await {
                tracing::error!(%error, "the MQTT development listener stopped");
            }
        });
        tokio::select! {
            () = shutdown.cancelled() => {}
            _ = &mut rmqtt => {}
        }
        rmqtt.abort();
        let _ = rmqtt.await;
    };
    Ok((bound, serve))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_covers_the_topics_and_narrower_filters_it_matches() {
        for (outer, inner) in [
            ("devices/#", "devices/d1/events"),
            ("devices/#", "devices"),
            ("devices/#", "devices/+/events"),
            ("devices/#", "devices/#"),
            ("a/+/c", "a/b/c"),
            ("a/+/c", "a/+/c"),
            ("#", "a/b"),
            ("+/b", "a/b"),
        ] {
            assert!(covers(outer, inner), "{outer} should cover {inner}");
        }
        for (outer, inner) in [
            ("devices/#", "#"),
            ("devices/#", "+/events"),
            ("devices/#", "device"),
            ("a/+/c", "a/#"),
            ("a/+/c", "a/b/c/d"),
            ("a/+", "a/b/c"),
            ("#", "$SYS/uptime"),
            ("+/b", "$x/b"),
            ("a/b", "a/+"),
        ] {
            assert!(!covers(outer, inner), "{outer} should not cover {inner}");
        }
    }

    #[test]
    fn denied_topics_take_devices_and_only_valid_filters() {
        let denied = DeniedTopics::new(&["secret/+".to_owned()]).unwrap();
        assert!(denied.denies_topic("devices/d1/events"));
        assert!(denied.denies_topic("secret/x"));
        assert!(!denied.denies_topic("secret/x/y"));
        assert!(denied.denies_filter("devices/+/events"));
        assert!(!denied.denies_filter("#"));
        for bad in ["", "a/#/b", "a+", "a/b#", "x\0"] {
            assert!(
                DeniedTopics::new(&[bad.to_owned()]).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
