//! Retained messages in memory. rmqtt's built-in store is switched off unless its retainer plugin
//! runs; this turns it on with its own in-memory storage. What a device must find retained (its
//! desired settings, its open firmware offer) is published again from the database when it
//! changes and when the device connects (`Authority::presence`), so losing it with the process
//! loses nothing.

use std::time::Duration;

use async_trait::async_trait;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::types::{Retain, TopicFilter, TopicName};

pub(crate) struct MemoryRetain(pub DefaultRetainStorage);

#[async_trait]
impl RetainStorage for MemoryRetain {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        _expiry: Option<Duration>,
    ) -> rmqtt::Result<()> {
        self.0.set_with_timeout(topic, retain, None).await
    }

    async fn get(&self, filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        self.0.get_message(filter).await
    }

    async fn count(&self) -> isize {
        0
    }

    async fn max(&self) -> isize {
        0
    }
}
