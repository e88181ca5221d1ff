//! A small bounded cache of single look-ups, emptied whenever `directory_version` moves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{User, email_key};

/// Most people held (a few MiB when full, and only once looked up). A make_call for someone
/// outside them costs one indexed read.
const CAPACITY: usize = 10_000;

/// People recently looked up, by public id and by email key.
#[derive(Debug)]
pub(super) struct Cache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The `directory_version` the entries belong to.
    version: i64,
    /// Moves with every reset, so that a read begun before it is not stored after it.
    generation: u64,
    users: HashMap<String, Arc<User>>,
    /// Email key → public id.
    emails: HashMap<String, String>,
    /// Push token → owner's public id (`None`: unassigned or unknown).
    devices: HashMap<String, Option<String>>,
    /// How many people have one of these roles (the key lists them), for the user sync's
    /// pages: the same for every page until the directory changes.
    counts: HashMap<String, usize>,
}

impl Cache {
    /// An empty cache that any version read from the database replaces.
    pub(super) fn new() -> Cache {
        Cache {
            inner: Mutex::new(Inner {
                version: -1,
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The version the entries belong to.
    pub(super) fn version(&self) -> i64 {
        self.lock().version
    }

    /// The generation to hand back to [`Cache::insert`] after reading the database.
    pub(super) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Forgets everything and labels the cache with `version`.
    pub(super) fn reset(&self, version: i64) {
        let mut inner = self.lock();
        inner.version = version;
        inner.generation += 1;
        inner.users = HashMap::new();
        inner.emails = HashMap::new();
        inner.devices = HashMap::new();
        inner.counts = HashMap::new();
    }

    /// The owner of a push token as last read: `Some(None)` for a token nobody owns.
    pub(super) fn device(&self, token: &str) -> Option<Option<String>> {
        self.lock().devices.get(token).cloned()
    }

    /// Holds who owns `token`, read at `generation`.
    pub(super) fn insert_device(&self, generation: u64, token: &str, owner: Option<String>) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.devices.len() >= CAPACITY {
            // Pushes name few devices: starting over costs little.
            inner.devices.clear();
        }
        inner.devices.insert(token.to_string(), owner);
    }

    /// A count held under `key`.
    pub(super) fn count(&self, key: &str) -> Option<usize> {
        self.lock().counts.get(key).copied()
    }

    /// Holds a count read at `generation`.
    pub(super) fn insert_count(&self, generation: u64, key: String, count: usize) {
        let mut inner = self.lock();
        if inner.generation == generation && inner.counts.len() < CAPACITY {
            inner.counts.insert(key, count);
        }
    }

    /// The person with this public id, if held.
    pub(super) fn by_id(&self, id: &str) -> Option<Arc<User>> {
        self.lock().users.get(id).cloned()
    }

    /// The person with this email key, if held.
    pub(super) fn by_email_key(&self, key: &str) -> Option<Arc<User>> {
        let inner = self.lock();
        let user = inner.emails.get(key).and_then(|id| inner.users.get(id))?;
        // An entry whose email changed since it was mapped is no answer for this key.
        (email_key(&user.email) == key).then(|| user.clone())
    }

    /// Holds `user`, read from the database at `generation`; nothing if a reset came since.
    pub(super) fn insert(&self, generation: u64, user: &Arc<User>) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.users.len() >= CAPACITY && !inner.users.contains_key(&user.id) {
            // The hash order is as good as a random pick, and needs no bookkeeping.
            if let Some(id) = inner.users.keys().next().cloned()
                && let Some(out) = inner.users.remove(&id)
            {
                inner.emails.remove(&email_key(&out.email));
            }
        }
        if let Some(old) = inner.users.insert(user.id.clone(), user.clone()) {
            let old_key = email_key(&old.email);
            if inner.emails.get(&old_key) == Some(&user.id) {
                inner.emails.remove(&old_key);
            }
        }
        inner.emails.insert(email_key(&user.email), user.id.clone());
    }

    /// How many people are held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(seq: i64, email: &str) -> Arc<User> {
        Arc::new(User {
            seq,
            id: format!("U{seq}"),
            name: String::new(),
            username: String::new(),
            email: email.into(),
            phone_number: None,
            active: true,
            role: crate::roles::Role::Editor,
            timezone: "UTC".into(),
            language: None,
            contacts: Default::default(),
            created_at: 0,
            updated_at: 0,
        })
    }

    #[test]
    fn stays_within_capacity() {
        let cache = Cache::new();
        let generation = cache.generation();
        for i in 0..(CAPACITY as i64 * 2) {
            cache.insert(generation, &user(i, &format!("p{i}@x.com")));
        }
        assert_eq!(cache.len(), CAPACITY);
        let last = CAPACITY as i64 * 2 - 1;
        assert!(cache.by_email_key(&format!("p{last}@x.com")).is_some());
    }

    #[test]
    fn a_read_from_before_a_reset_is_not_kept() {
        let cache = Cache::new();
        let generation = cache.generation();
        cache.reset(7);
        cache.insert(generation, &user(1, "a@x.com"));
        assert!(cache.by_id("U1").is_none());
        assert_eq!(cache.version(), 7);
    }

    #[test]
    fn a_changed_email_no_longer_answers_for_the_old_one() {
        let cache = Cache::new();
        let generation = cache.generation();
        cache.insert(generation, &user(1, "Old@x.com"));
        assert!(cache.by_email_key("old@x.com").is_some());
        cache.insert(generation, &user(1, "new@x.com"));
        assert!(cache.by_email_key("old@x.com").is_none());
        assert_eq!(cache.by_email_key("new@x.com").map(|u| u.seq), Some(1));
    }
}
