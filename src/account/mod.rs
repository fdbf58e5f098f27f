//! Accounts: the interned id every connection, subscription, interest entry and
//! envelope carries, and the server's registry of account names.

pub mod imports;
pub mod mapping;

use std::collections::HashMap;
use std::sync::Arc;

/// An account, interned: an index into the server's [`Accounts`] and into each
/// shard's per-account tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub u32);

impl AccountId {
    /// `$G`, the account of every client that no configuration puts elsewhere.
    pub const GLOBAL: AccountId = AccountId(0);

    /// The index of this account's slot in per-account tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Name of the global account.
pub const GLOBAL_NAME: &str = "$G";

/// The server's accounts by name and by id. Ids are dense and never reused, so a
/// shard can keep its per-account state in a vector indexed by id.
#[derive(Debug, Clone)]
pub struct Accounts {
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, AccountId>,
}

impl Default for Accounts {
    fn default() -> Self {
        Accounts::new()
    }
}

impl Accounts {
    /// A registry holding only `$G` (id 0).
    pub fn new() -> Accounts {
        let mut accounts = Accounts {
            names: Vec::new(),
            ids: HashMap::new(),
        };
        let global = accounts.intern(GLOBAL_NAME);
        debug_assert_eq!(global, AccountId::GLOBAL);
        accounts
    }

    /// The id of `name`, registering it first when it is new.
    pub fn intern(&mut self, name: &str) -> AccountId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = AccountId(self.names.len() as u32);
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    /// The id of `name`, if registered.
    pub fn lookup(&self, name: &str) -> Option<AccountId> {
        self.ids.get(name).copied()
    }

    /// The name of `id` (empty for an id this registry never gave out).
    pub fn name(&self, id: AccountId) -> &str {
        self.names.get(id.index()).map_or("", |n| n)
    }

    /// Every account's name, by id.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Never true: `$G` is always there.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_is_id_zero_and_ids_are_dense_and_stable() {
        let mut a = Accounts::new();
        assert_eq!(a.lookup("$G"), Some(AccountId::GLOBAL));
        let x = a.intern("A");
        let y = a.intern("B");
        assert_eq!((x, y), (AccountId(1), AccountId(2)));
        assert_eq!(a.intern("A"), x);
        assert_eq!(a.name(y), "B");
        assert_eq!(a.name(AccountId(9)), "");
        assert_eq!(a.lookup("C"), None);
        assert_eq!(a.len(), 3);
    }
}
