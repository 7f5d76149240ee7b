//! Shared subscriptions (`$share/GROUP/FILTER`, MQTT 5 section 4.8.2, also offered over 3.1.1):
//! rmqtt parses them only when a [`SharedSubscription`] says it supports them, and its default
//! says no, which leaves `$share/…` a literal filter that matches nothing. This one takes the
//! group's members in turn, skipping those that are offline while any member is online.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::subscribe::SharedSubscription;
use rmqtt::types::{
    ClientId, Id, IsOnline, NodeId, SharedGroup, SubscriptionIdentifier, SubscriptionOptions,
    TopicName,
};

#[derive(Debug, Default)]
pub(crate) struct InTurn {
    next: AtomicUsize,
}

type Member = (
    NodeId,
    ClientId,
    SubscriptionOptions,
    Option<Vec<SubscriptionIdentifier>>,
    Option<IsOnline>,
);

/// The member after the previous choice, preferring online ones; `None` for an empty group.
fn choose(turn: usize, online: &[bool]) -> Option<(usize, bool)> {
    let count = online.len();
    if count == 0 {
        return None;
    }
    let chosen = (0..count)
        .map(|offset| (turn + offset) % count)
        .find(|&index| online[index])
        .unwrap_or(turn % count);
    Some((chosen, online[chosen]))
}

#[async_trait]
impl SharedSubscription for InTurn {
    fn is_supported(&self) -> bool {
        true
    }

    async fn choice(
        &self,
        _context: &ServerContext,
        _group: &SharedGroup,
        _publisher: &Id,
        _topic: &TopicName,
        members: &[Member],
    ) -> Option<(usize, IsOnline)> {
        let online: Vec<bool> = members
            .iter()
            .map(|member| member.4.unwrap_or(true))
            .collect();
        choose(self.next.fetch_add(1, Ordering::Relaxed), &online)
    }
}

/// Installs [`InTurn`] in a broker instance.
pub(crate) async fn enable(context: &ServerContext) {
    *context.extends.shared_subscription_mut().await = Box::new(InTurn::default());
}

#[cfg(test)]
mod tests {
    use super::choose;

    #[test]
    fn members_are_taken_in_turn_skipping_offline_ones_while_any_is_online() {
        assert_eq!(choose(0, &[]), None);
        let picks: Vec<usize> = (0..4)
            .filter_map(|turn| choose(turn, &[true, true, true]))
            .map(|(index, _)| index)
            .collect();
        assert_eq!(picks, [0, 1, 2, 0]);
        assert_eq!(choose(0, &[false, true, false]), Some((1, true)));
        assert_eq!(choose(2, &[false, true, false]), Some((1, true)));
        // Nobody online: the message waits in a member's session.
        assert_eq!(choose(4, &[false, false]), Some((0, false)));
    }
}
