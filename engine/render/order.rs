//! The node processing order, computed exactly as web-audio-api 1.1.0's `Graph::order_nodes`
//! (render/graph.rs): a depth-first walk from every node in id order, following outgoing edges
//! in insertion order, emitting nodes in post-order, then reversed. A cycle that contains a
//! DelayNode writer is broken by dropping that writer's outgoing edges (the walk restarts); the
//! nodes of a cycle without one are left out (muted).
//!
//! The order matters for more than correctness: each node adds its output into its targets'
//! inputs when it runs, so the order decides the order of float additions at every node with
//! three or more inputs.

/// A graph as the ordering sees it: per node, its outgoing edge targets (in insertion order),
/// and whether it can break a cycle.
pub struct Topology {
    pub outgoing: Vec<Vec<usize>>,
    pub cycle_breaker: Vec<bool>,
}

/// The result: nodes to process, in order, and the cycle breakers whose edges were dropped.
#[derive(Debug, PartialEq, Eq)]
pub struct Order {
    pub ordered: Vec<usize>,
    pub broken: Vec<usize>,
}

struct Walk<'a> {
    outgoing: &'a [Vec<usize>],
    cycle_breaker: &'a [bool],
    marked: Vec<bool>,
    marked_temp: Vec<usize>,
    ordered: Vec<usize>,
    in_cycle: Vec<usize>,
    cycle_breakers: Vec<usize>,
}

impl Walk<'_> {
    /// Returns true when a cycle breaker was found (the ordering must restart).
    fn visit(&mut self, node: usize) -> bool {
        if let Some(pos) = self.marked_temp.iter().position(|&m| m == node) {
            match self.marked_temp[pos..]
                .iter()
                .find(|&&n| self.cycle_breaker[n])
            {
                Some(&breaker) => {
                    self.cycle_breakers.push(breaker);
                    return true;
                }
                None => {
                    self.in_cycle.extend_from_slice(&self.marked_temp[pos..]);
                    return false;
                }
            }
        }
        if self.marked[node] {
            return false;
        }
        self.marked[node] = true;
        self.marked_temp.push(node);
        for i in 0..self.outgoing[node].len() {
            let target = self.outgoing[node][i];
            if self.visit(target) {
                return true;
            }
        }
        self.ordered.push(node);
        self.marked_temp.retain(|&m| m != node);
        false
    }
}

/// Orders the nodes. Mutates `topology` the way web-audio-api mutates its graph: the outgoing
/// edges of cycle-breaking delay writers are cleared.
pub fn order(topology: &mut Topology) -> Order {
    let n = topology.outgoing.len();
    let mut broken = Vec::new();
    loop {
        let mut walk = Walk {
            outgoing: &topology.outgoing,
            cycle_breaker: &topology.cycle_breaker,
            marked: vec![false; n],
            marked_temp: Vec::new(),
            ordered: Vec::with_capacity(n),
            in_cycle: Vec::new(),
            cycle_breakers: Vec::new(),
        };
        let mut applied = false;
        for node in 0..n {
            if walk.visit(node) {
                applied = true;
                break;
            }
        }
        if applied {
            let breakers = walk.cycle_breakers;
            for b in breakers {
                topology.outgoing[b].clear();
                broken.push(b);
            }
            continue;
        }
        let in_cycle = walk.in_cycle;
        let mut ordered = walk.ordered;
        ordered.retain(|o| !in_cycle.contains(o));
        ordered.reverse();
        return Order { ordered, broken };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(edges: &[(usize, usize)], n: usize, breakers: &[usize]) -> Topology {
        let mut outgoing = vec![Vec::new(); n];
        for &(a, b) in edges {
            outgoing[a].push(b);
        }
        let mut cycle_breaker = vec![false; n];
        for &b in breakers {
            cycle_breaker[b] = true;
        }
        Topology {
            outgoing,
            cycle_breaker,
        }
    }

    #[test]
    fn dag_orders_sources_before_sinks_in_reverse_post_order() {
        // 1 -> 0, 2 -> 1, 3 -> 0 (web-audio-api's own test_add_remove graph)
        let mut t = topo(&[(1, 0), (2, 1), (3, 0)], 4, &[]);
        let o = order(&mut t);
        assert_eq!(o.ordered, vec![3, 2, 1, 0]);
        assert!(o.broken.is_empty());
    }

    #[test]
    fn cycle_through_a_delay_writer_is_broken_at_the_writer() {
        // gain 1 -> writer 2 -> reader 3 -> gain 4 -> gain 1; gain 1 -> destination 0
        let mut t = topo(&[(1, 2), (2, 3), (3, 4), (4, 1), (1, 0)], 5, &[2]);
        let o = order(&mut t);
        assert_eq!(o.broken, vec![2]);
        assert!(t.outgoing[2].is_empty());
        assert_eq!(o.ordered.len(), 5);
        let pos = |n| o.ordered.iter().position(|&x| x == n).unwrap();
        assert!(pos(3) < pos(4) && pos(4) < pos(1) && pos(1) < pos(2));
    }

    #[test]
    fn cycle_without_a_delay_is_muted() {
        let mut t = topo(&[(1, 2), (2, 1), (2, 0), (3, 0)], 4, &[]);
        let o = order(&mut t);
        assert_eq!(o.ordered, vec![3, 0]);
    }
}
