//! Admission by reservation: a server-wide [`Budget`] of resources, a per-connection
//! [`Account`] holding a share of it, and a [`Reservation`] that gives back what it took when
//! dropped.
//!
//! A render reserves what it may need at its peak before it allocates any of it (see
//! [`super::MemoryEstimate`]), and the reservation lives as long as the job or the held
//! buffer it covers, so every way a render ends (complete, cancel, disconnect, error, a panic
//! unwinding the worker) releases it: there is no release call to forget.
//!
//! Two resources: memory, reserved from an estimate made before anything is allocated; and
//! CPU, the share of the cores a render needs to keep up with real-time playback, reserved
//! from an estimate (the cost measured on earlier renders) when the render is accepted and
//! replaced by its own measured cost as it renders ([`Reservation::set`]), so that renders
//! accepted earlier keep their deadlines: a new render is refused while the cores are
//! committed. The lock is taken to reserve, to release, and when a render's measured CPU cost
//! moves away from what it holds (render/stream.rs), never per block.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

/// What a render reserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// Bytes of memory.
    Memory,
    /// Millionths of a core ([`MICROCORES`] per core): the CPU time a render takes per second
    /// of audio, i.e. what it needs to play in real time.
    Cpu,
}

/// Number of [`Resource`] variants.
pub const RESOURCES: usize = 2;

/// [`Resource::Cpu`] units per core.
pub const MICROCORES: u64 = 1_000_000;

impl Resource {
    const ALL: [Resource; RESOURCES] = [Resource::Memory, Resource::Cpu];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::Cpu => "cpu",
        }
    }

    fn describe(self, amount: u64) -> String {
        match self {
            Resource::Memory => format!("{} MiB", amount.div_ceil(1 << 20)),
            Resource::Cpu => format!("{:.2} cores", amount as f64 / MICROCORES as f64),
        }
    }
}

/// An amount of each resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Demand([u64; RESOURCES]);

impl Demand {
    pub fn memory(bytes: u64) -> Demand {
        let mut d = Demand::default();
        d.0[Resource::Memory.index()] = bytes;
        d
    }

    pub fn cpu(microcores: u64) -> Demand {
        Demand::default().with(Resource::Cpu, microcores)
    }

    /// This demand with `amount` of `resource`.
    pub fn with(mut self, resource: Resource, amount: u64) -> Demand {
        self.0[resource.index()] = amount;
        self
    }

    pub fn get(&self, resource: Resource) -> u64 {
        self.0[resource.index()]
    }
}

/// Seconds a busy client is told to wait: the reservations that block it end when renders end,
/// typically within seconds; a client that retries sooner only costs a parse.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// Why a reservation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// More than the server's limit or a connection's share: it could never fit.
    TooLarge {
        resource: Resource,
        needs: u64,
        limit: u64,
    },
    /// It would fit, but not now. `connection`: the connection's own share is what is full.
    Busy {
        resource: Resource,
        in_use: u64,
        limit: u64,
        connection: bool,
        retry_after: u32,
    },
}

impl Refusal {
    /// Seconds after which a retry may succeed; `None` when it never will.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Refusal::TooLarge { .. } => None,
            Refusal::Busy { retry_after, .. } => Some(*retry_after),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::TooLarge {
                resource,
                needs,
                limit,
            } => write!(
                f,
                "render too large: needs {} of {}, the limit is {}",
                resource.describe(needs),
                resource.name(),
                resource.describe(limit)
            ),
            Refusal::Busy {
                resource,
                in_use,
                limit,
                connection,
                ..
            } => write!(
                f,
                "{} busy: {} ({} in use of {}), retry later",
                if connection { "Connection" } else { "Server" },
                resource.name(),
                resource.describe(in_use),
                resource.describe(limit)
            ),
        }
    }
}

/// The server-wide limits and what is reserved of them.
#[derive(Debug)]
pub struct Budget {
    limit: Demand,
    per_account: Demand,
    used: Mutex<Demand>,
}

impl Budget {
    /// `limit` for the whole server, `per_account` for each connection (at most `limit`).
    pub fn new(limit: Demand, per_account: Demand) -> Arc<Budget> {
        let mut share = per_account;
        for (s, l) in share.0.iter_mut().zip(limit.0) {
            *s = (*s).min(l);
        }
        Arc::new(Budget {
            limit,
            per_account: share,
            used: Mutex::new(Demand::default()),
        })
    }

    /// A budget that refuses nothing (for callers that do not limit).
    pub fn unlimited() -> Arc<Budget> {
        let all = Demand([u64::MAX; RESOURCES]);
        Budget::new(all, all)
    }

    pub fn limit(&self) -> Demand {
        self.limit
    }

    pub fn per_account(&self) -> Demand {
        self.per_account
    }

    /// What is reserved now, server-wide.
    pub fn in_use(&self) -> Demand {
        *self.used.lock()
    }

    /// A new account (one per connection) drawing on this budget.
    pub fn account(self: &Arc<Self>) -> Arc<Account> {
        Arc::new(Account {
            budget: self.clone(),
            used: Mutex::new(Demand::default()),
        })
    }
}

/// One connection's share of a [`Budget`].
#[derive(Debug)]
pub struct Account {
    budget: Arc<Budget>,
    used: Mutex<Demand>,
}

impl Account {
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// What this account has reserved now.
    pub fn in_use(&self) -> Demand {
        *self.used.lock()
    }

    /// Reserves `demand` from this account and the budget, all resources or none.
    pub fn reserve(self: &Arc<Self>, demand: Demand) -> Result<Reservation, Refusal> {
        let budget = &self.budget;
        for (i, resource) in Resource::ALL.into_iter().enumerate() {
            let (needs, limit) = (demand.0[i], budget.per_account.0[i].min(budget.limit.0[i]));
            if needs > limit {
                return Err(Refusal::TooLarge {
                    resource,
                    needs,
                    limit,
                });
            }
        }
        // Account before budget, always in this order, so two reservations cannot deadlock.
        let mut mine = self.used.lock();
        let mut all = budget.used.lock();
        for (i, resource) in Resource::ALL.into_iter().enumerate() {
            let needs = demand.0[i];
            // A resource held beyond its limit (a measured cost above its estimate) refuses
            // only renders that ask for more of it.
            if needs == 0 {
                continue;
            }
            // The server's limit first: when both are full, waiting for other connections
            // is what the client needs to know.
            if all.0[i].saturating_add(needs) > budget.limit.0[i] {
                return Err(Refusal::Busy {
                    resource,
                    in_use: all.0[i],
                    limit: budget.limit.0[i],
                    connection: false,
                    retry_after: RETRY_AFTER_SECONDS,
                });
            }
            if mine.0[i].saturating_add(needs) > budget.per_account.0[i] {
                return Err(Refusal::Busy {
                    resource,
                    in_use: mine.0[i],
                    limit: budget.per_account.0[i],
                    connection: true,
                    retry_after: RETRY_AFTER_SECONDS,
                });
            }
        }
        for i in 0..RESOURCES {
            mine.0[i] += demand.0[i];
            all.0[i] += demand.0[i];
        }
        Ok(Reservation {
            account: self.clone(),
            amount: demand,
        })
    }
}

/// Resources held until dropped.
#[must_use = "dropping a reservation releases it at once"]
#[derive(Debug)]
pub struct Reservation {
    account: Arc<Account>,
    amount: Demand,
}

impl Reservation {
    pub fn amount(&self) -> Demand {
        self.amount
    }

    /// Holds `amount` of `resource` from now on instead, whatever the limits: the render is
    /// already accepted, and its measured cost replaces the estimate it was accepted with
    /// (more than the limit only refuses new renders until enough ends).
    pub fn set(&mut self, resource: Resource, amount: u64) {
        let i = resource.index();
        let mut mine = self.account.used.lock();
        let mut all = self.account.budget.used.lock();
        mine.0[i] = mine.0[i] - self.amount.0[i] + amount;
        all.0[i] = all.0[i] - self.amount.0[i] + amount;
        self.amount.0[i] = amount;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut mine = self.account.used.lock();
        let mut all = self.account.budget.used.lock();
        for i in 0..RESOURCES {
            mine.0[i] -= self.amount.0[i];
            all.0[i] -= self.amount.0[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn reserves_until_the_limit_and_releases_on_drop() {
        let budget = Budget::new(Demand::memory(100 * MIB), Demand::memory(100 * MIB));
        let account = budget.account();
        let a = account.reserve(Demand::memory(60 * MIB)).unwrap();
        let b = account.reserve(Demand::memory(40 * MIB)).unwrap();
        assert_eq!(budget.in_use().get(Resource::Memory), 100 * MIB);
        let refused = account.reserve(Demand::memory(1)).unwrap_err();
        assert_eq!(
            refused,
            Refusal::Busy {
                resource: Resource::Memory,
                in_use: 100 * MIB,
                limit: 100 * MIB,
                connection: false,
                retry_after: RETRY_AFTER_SECONDS,
            }
        );
        assert_eq!(
            refused.to_string(),
            "Server busy: memory (100 MiB in use of 100 MiB), retry later"
        );
        assert_eq!(refused.retry_after(), Some(RETRY_AFTER_SECONDS));
        drop(a);
        assert_eq!(budget.in_use().get(Resource::Memory), 40 * MIB);
        assert_eq!(account.in_use().get(Resource::Memory), 40 * MIB);
        let c = account.reserve(Demand::memory(60 * MIB)).unwrap();
        drop((b, c));
        assert_eq!(budget.in_use(), Demand::default());
        assert_eq!(account.in_use(), Demand::default());
    }

    #[test]
    fn more_than_a_share_could_never_fit() {
        let budget = Budget::new(Demand::memory(100 * MIB), Demand::memory(25 * MIB));
        let refused = budget
            .account()
            .reserve(Demand::memory(26 * MIB))
            .unwrap_err();
        assert_eq!(refused.retry_after(), None);
        assert_eq!(
            refused.to_string(),
            "render too large: needs 26 MiB of memory, the limit is 25 MiB"
        );
        assert_eq!(budget.in_use(), Demand::default());
    }

    #[test]
    fn a_connection_share_leaves_room_for_others() {
        let budget = Budget::new(Demand::memory(100 * MIB), Demand::memory(25 * MIB));
        let (one, two) = (budget.account(), budget.account());
        let _a = one.reserve(Demand::memory(20 * MIB)).unwrap();
        let refused = one.reserve(Demand::memory(10 * MIB)).unwrap_err();
        assert!(matches!(
            refused,
            Refusal::Busy {
                connection: true,
                in_use,
                ..
            } if in_use == 20 * MIB
        ));
        assert!(refused.to_string().starts_with("Connection busy: memory"));
        let _b = two.reserve(Demand::memory(25 * MIB)).unwrap();
        assert_eq!(budget.in_use().get(Resource::Memory), 45 * MIB);
    }

    #[test]
    fn the_share_is_at_most_the_budget_and_unlimited_refuses_nothing() {
        let budget = Budget::new(Demand::memory(10), Demand::memory(20));
        assert_eq!(budget.per_account(), Demand::memory(10));
        let free = Budget::unlimited();
        let account = free.account();
        let _a = account.reserve(Demand::memory(u64::MAX / 2)).unwrap();
        let _b = account.reserve(Demand::memory(u64::MAX / 2)).unwrap();
    }

    #[test]
    fn cpu_is_refused_at_the_cores_and_a_measured_cost_replaces_the_estimate() {
        let limit = Demand::memory(100 * MIB).with(Resource::Cpu, 2 * MICROCORES);
        let budget = Budget::new(limit, limit);
        let account = budget.account();
        let mut a = account.reserve(Demand::cpu(MICROCORES)).unwrap();
        let _b = account.reserve(Demand::cpu(MICROCORES)).unwrap();
        let refused = account.reserve(Demand::cpu(1)).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "Server busy: cpu (2.00 cores in use of 2.00 cores), retry later"
        );
        // Memory is still there for renders that fit.
        assert!(account.reserve(Demand::memory(MIB)).is_ok());
        // Cheaper than estimated: room for another.
        a.set(Resource::Cpu, MICROCORES / 2);
        assert_eq!(budget.in_use().get(Resource::Cpu), 3 * MICROCORES / 2);
        let c = account.reserve(Demand::cpu(MICROCORES / 4)).unwrap();
        // Dearer than the limit: held anyway, and new renders wait; memory alone still fits.
        a.set(Resource::Cpu, 3 * MICROCORES);
        assert!(account.reserve(Demand::cpu(1)).is_err());
        assert!(account.reserve(Demand::memory(MIB)).is_ok());
        drop((a, c));
        assert_eq!(budget.in_use().get(Resource::Cpu), MICROCORES);
        assert_eq!(account.in_use().get(Resource::Cpu), MICROCORES);
    }

    #[test]
    fn reservations_released_on_other_threads_balance() {
        let budget = Budget::new(Demand::memory(1000), Demand::memory(1000));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let account = budget.account();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if let Ok(r) = account.reserve(Demand::memory(100)) {
                            drop(r);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(budget.in_use(), Demand::default());
    }
}
