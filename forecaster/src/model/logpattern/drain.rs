//! The parse tree, the templates and their least-recently-observed order.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::mem::size_of;
use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3;

use super::mask::{Token, mask_line};
use super::{MinerConfig, Observation, Sample, Severity, SeverityCounts, TemplateId, TemplateInfo};

/// No node, no template.
const NONE: u32 = u32::MAX;
/// What differing positions of a template become.
const WILDCARD: &str = "<*>";

/// A small multiplicative hasher for the tree's short keys. Flooding a node with chosen keys buys
/// nothing: a node holds at most `max_children` keys, whatever the hash does.
#[derive(Debug, Clone, Copy, Default)]
struct FxBuild;

struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

impl BuildHasher for FxBuild {
    type Hasher = FxHasher;

    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

type Map<K, V> = HashMap<K, V, FxBuild>;

/// A node of a service's tree below the token-count layer (the token-count nodes included).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Node {
    /// The parent node, or [`NONE`] for a token-count node.
    parent: u32,
    /// Literal children by token.
    children: Map<Box<str>, u32>,
    /// The wildcard child, or [`NONE`].
    wildcard: u32,
    /// Templates at this node when it is a leaf.
    templates: Vec<u32>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.wildcard == NONE && self.templates.is_empty()
    }
}

/// A service's tree: token-count nodes by count.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct ServiceTree {
    by_len: Map<u32, u32>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Template {
    id: TemplateId,
    service: Arc<str>,
    /// Tokens joined by single spaces.
    text: Arc<str>,
    /// End offset of each token in `text`.
    ends: Box<[u32]>,
    leaf: u32,
    severity: Severity,
    counts: [u64; 5],
    first_seen_ms: i64,
    last_seen_ms: i64,
    samples: Vec<Sample>,
    /// The miner's line counter when this template was last observed.
    touched: u64,
    /// Neighbours in the recency list (more recent, less recent).
    newer: u32,
    older: u32,
}

impl Template {
    #[inline]
    fn token(&self, k: usize) -> &str {
        let start = if k == 0 {
            0
        } else {
            self.ends[k - 1] as usize + 1
        };
        &self.text[start..self.ends[k] as usize]
    }

    fn info(&self) -> TemplateInfo {
        TemplateInfo {
            id: self.id,
            service: self.service.clone(),
            template: self.text.clone(),
            severity: self.severity,
            count: self.counts.iter().sum(),
            counts: SeverityCounts::from_array(self.counts),
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            samples: self.samples.clone(),
        }
    }

    fn heap_bytes(&self) -> usize {
        // The Arc<str> header is two counters.
        16 + self.text.len()
            + self.ends.len() * size_of::<u32>()
            + self.samples.capacity() * size_of::<Sample>()
            + self
                .samples
                .iter()
                .map(|s| s.line.capacity())
                .sum::<usize>()
    }
}

/// Mines log lines into templates, per service. See the [module docs](super).
///
/// Not internally synchronised: share it behind a lock, or keep one per worker and per set of
/// services.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PatternMiner {
    config: MinerConfig,
    services: Map<Arc<str>, ServiceTree>,
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    slots: Vec<Option<Template>>,
    free_slots: Vec<u32>,
    ids: Map<u64, u32>,
    live: usize,
    /// Most and least recently observed templates.
    newest: u32,
    oldest: u32,
    evictions: u64,
    /// Lines observed, for the recency of templates within a leaf.
    tick: u64,
    /// Reused buffers: the masked line and its tokens.
    #[serde(skip)]
    buf: String,
    #[serde(skip)]
    tokens: Vec<Token>,
}

impl PatternMiner {
    /// Applies `config` (clamped) to a miner restored from disk: the configuration in effect
    /// wins over the saved one.
    pub fn reconfigure(&mut self, config: MinerConfig) {
        self.config = config.clamped();
    }

    /// A miner with `config`, clamped to valid ranges (see [`MinerConfig`]).
    pub fn new(config: MinerConfig) -> Self {
        Self {
            config: config.clamped(),
            services: Map::default(),
            nodes: Vec::new(),
            free_nodes: Vec::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            ids: Map::default(),
            live: 0,
            newest: NONE,
            oldest: NONE,
            evictions: 0,
            tick: 0,
            buf: String::new(),
            tokens: Vec::new(),
        }
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> &MinerConfig {
        &self.config
    }

    /// Templates alive.
    pub fn len(&self) -> usize {
        self.live
    }

    /// No template yet.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Templates evicted so far to stay within [`MinerConfig::max_templates`].
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Tree nodes alive (bounded by `max_templates × (depth + 1)`).
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free_nodes.len()
    }

    /// Mines one log record of `service` at event time `ts_ms`. Never fails: any body, even
    /// empty, belongs to some template.
    pub fn observe(
        &mut self,
        service: &str,
        severity: Severity,
        body: &str,
        ts_ms: i64,
    ) -> Observation {
        let line = first_line(body);
        let line = cut(line, self.config.max_line_bytes);
        let mut buf = std::mem::take(&mut self.buf);
        let mut tokens = std::mem::take(&mut self.tokens);
        mask_line(line, &mut buf, &mut tokens);
        let obs = self.observe_masked(service, severity, body, ts_ms, &buf, &tokens);
        self.buf = buf;
        self.tokens = tokens;
        obs
    }

    fn observe_masked(
        &mut self,
        service: &str,
        severity: Severity,
        body: &str,
        ts_ms: i64,
        buf: &str,
        tokens: &[Token],
    ) -> Observation {
        let found = self
            .find_leaf(service, buf, tokens)
            .and_then(|leaf| self.best_match(leaf, buf, tokens));
        self.tick += 1;
        let tick = self.tick;
        if let Some(slot) = found {
            self.touch(slot);
            let (max_samples, max_sample_bytes) =
                (self.config.max_samples, self.config.max_sample_bytes);
            if let Some(t) = self.template_mut(slot) {
                t.touched = tick;
                let generalised = generalise(t, buf, tokens);
                record(t, severity, ts_ms);
                add_sample(t, severity, body, ts_ms, max_samples, max_sample_bytes);
                return Observation {
                    template_id: t.id,
                    is_new: false,
                    generalised,
                    template: t.text.clone(),
                    evicted: None,
                };
            }
        }
        let leaf = self.leaf_for(service, buf, tokens);
        // One eviction at most: a full leaf gives up its least recently observed template, which
        // also keeps the miner within `max_templates`.
        let leaf_templates = &self.nodes[leaf as usize].templates;
        let victim = if leaf_templates.len() >= self.config.max_leaf_templates {
            leaf_templates
                .iter()
                .copied()
                .min_by_key(|&s| self.slots[s as usize].as_ref().map_or(0, |t| t.touched))
        } else if self.live >= self.config.max_templates {
            Some(self.oldest)
        } else {
            None
        };
        let evicted = victim.and_then(|slot| self.evict(slot, leaf));
        let (template_id, template) =
            self.insert(service, leaf, severity, body, ts_ms, buf, tokens);
        Observation {
            template_id,
            is_new: true,
            generalised: false,
            template,
            evicted,
        }
    }

    /// A snapshot of one template.
    pub fn get(&self, id: TemplateId) -> Option<TemplateInfo> {
        let slot = *self.ids.get(&id.0)?;
        self.slots[slot as usize].as_ref().map(Template::info)
    }

    /// Snapshots of all templates, in no particular order.
    pub fn templates(&self) -> impl Iterator<Item = TemplateInfo> + '_ {
        self.slots.iter().flatten().map(Template::info)
    }

    /// Approximate bytes held: templates, samples, tree nodes, indexes and buffers. Walks every
    /// template and node, so call it for metrics, not per line.
    pub fn memory_bytes(&self) -> usize {
        let map_entry = |key: usize, value: usize| key + value + 1;
        let mut bytes = size_of::<Self>()
            + self.slots.capacity() * size_of::<Option<Template>>()
            + self.free_slots.capacity() * size_of::<u32>()
            + self.nodes.capacity() * size_of::<Node>()
            + self.free_nodes.capacity() * size_of::<u32>()
            + self.ids.capacity() * map_entry(size_of::<u64>(), size_of::<u32>())
            + self.buf.capacity()
            + self.tokens.capacity() * size_of::<Token>();
        bytes += self
            .slots
            .iter()
            .flatten()
            .map(Template::heap_bytes)
            .sum::<usize>();
        for node in &self.nodes {
            bytes += node.children.capacity() * map_entry(size_of::<Box<str>>(), size_of::<u32>())
                + node.children.keys().map(|k| k.len()).sum::<usize>()
                + node.templates.capacity() * size_of::<u32>();
        }
        for (name, tree) in &self.services {
            bytes += map_entry(size_of::<Arc<str>>(), size_of::<ServiceTree>())
                + 16
                + name.len()
                + tree.by_len.capacity() * map_entry(size_of::<u32>(), size_of::<u32>());
        }
        bytes
    }

    /// Panics unless the tree, the templates, the recency list and the id index agree.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let live: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&s| self.slots[s as usize].is_some())
            .collect();
        assert_eq!(live.len(), self.live);
        assert_eq!(self.ids.len(), self.live);
        // The recency list holds every live template once.
        let mut seen = 0;
        let mut slot = self.newest;
        let mut newer = NONE;
        while slot != NONE {
            let t = self.slots[slot as usize]
                .as_ref()
                .expect("listed template is live");
            assert_eq!(t.newer, newer);
            newer = slot;
            slot = t.older;
            seen += 1;
            assert!(seen <= self.live);
        }
        assert_eq!(seen, self.live);
        assert_eq!(self.oldest, newer);
        let free: std::collections::HashSet<u32> = self.free_nodes.iter().copied().collect();
        for &s in &live {
            let t = self.slots[s as usize].as_ref().expect("live");
            assert_eq!(self.ids.get(&t.id.0), Some(&s));
            assert!(!free.contains(&t.leaf));
            assert!(self.nodes[t.leaf as usize].templates.contains(&s));
        }
        let mut in_leaves = 0;
        let mut reachable = 0;
        for tree in self.services.values() {
            let mut stack: Vec<u32> = tree.by_len.values().copied().collect();
            while let Some(n) = stack.pop() {
                assert!(!free.contains(&n));
                reachable += 1;
                let node = &self.nodes[n as usize];
                assert!(!node.is_empty(), "empty nodes are pruned");
                assert!(node.children.len() <= self.config.max_children);
                assert!(node.templates.len() <= self.config.max_leaf_templates);
                in_leaves += node.templates.len();
                stack.extend(node.children.values().copied());
                if node.wildcard != NONE {
                    stack.push(node.wildcard);
                }
            }
        }
        assert_eq!(in_leaves, self.live);
        assert_eq!(reachable, self.node_count());
    }

    /// The leaf a line routes to, if the tree has one; creates nothing.
    fn find_leaf(&self, service: &str, buf: &str, tokens: &[Token]) -> Option<u32> {
        let tree = self.services.get(service)?;
        let mut node = *tree.by_len.get(&(tokens.len() as u32))?;
        for t in tokens.iter().take(self.config.depth) {
            let n = &self.nodes[node as usize];
            let next = if t.has_digit {
                n.wildcard
            } else {
                n.children
                    .get(token_str(buf, t))
                    .copied()
                    .unwrap_or(n.wildcard)
            };
            if next == NONE {
                return None;
            }
            node = next;
        }
        Some(node)
    }

    /// The leaf a new template of this line goes to, created as needed.
    fn leaf_for(&mut self, service: &str, buf: &str, tokens: &[Token]) -> u32 {
        let len = tokens.len() as u32;
        let existing = self
            .services
            .get(service)
            .and_then(|tree| tree.by_len.get(&len).copied());
        let mut node = match existing {
            Some(n) => n,
            None => {
                let n = self.alloc_node(NONE);
                self.services
                    .entry(Arc::from(service))
                    .or_default()
                    .by_len
                    .insert(len, n);
                n
            }
        };
        for t in tokens.iter().take(self.config.depth) {
            let key = token_str(buf, t);
            let n = &self.nodes[node as usize];
            let literal = if t.has_digit {
                None
            } else {
                match n.children.get(key) {
                    Some(&child) => Some(child),
                    None if n.children.len() < self.config.max_children => {
                        let child = self.alloc_node(node);
                        self.nodes[node as usize].children.insert(key.into(), child);
                        Some(child)
                    }
                    None => None,
                }
            };
            node = match literal {
                Some(child) => child,
                None => match self.nodes[node as usize].wildcard {
                    NONE => {
                        let child = self.alloc_node(node);
                        self.nodes[node as usize].wildcard = child;
                        child
                    }
                    child => child,
                },
            };
        }
        node
    }

    fn alloc_node(&mut self, parent: u32) -> u32 {
        let node = Node {
            parent,
            wildcard: NONE,
            ..Node::default()
        };
        match self.free_nodes.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    /// The most similar template of `leaf` that reaches the similarity threshold.
    fn best_match(&self, leaf: u32, buf: &str, tokens: &[Token]) -> Option<u32> {
        let candidates = &self.nodes[leaf as usize].templates;
        let len = tokens.len();
        if len == 0 {
            return candidates.first().copied();
        }
        let needed = ((self.config.similarity * len as f64).ceil() as usize).min(len);
        // Positions that may differ (or be `<*>`) before the template is out of reach.
        let slack = len - needed;
        let mut best: Option<(u32, usize, usize)> = None;
        'candidates: for &slot in candidates {
            let Some(t) = self.slots[slot as usize].as_ref() else {
                continue;
            };
            let (mut equal, mut params) = (0, 0);
            for (k, tok) in tokens.iter().enumerate() {
                let tt = t.token(k);
                let lt = token_str(buf, tok);
                if tt == lt {
                    equal += 1;
                } else if covers(tt, lt) {
                    params += 1;
                }
                if k + 1 - equal > slack {
                    continue 'candidates;
                }
            }
            let better = match best {
                None => true,
                Some((_, e, p)) => equal > e || (equal == e && params > p),
            };
            if better {
                best = Some((slot, equal, params));
                if equal == len {
                    break;
                }
            }
        }
        best.map(|(slot, _, _)| slot)
    }

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        service: &str,
        leaf: u32,
        severity: Severity,
        body: &str,
        ts_ms: i64,
        buf: &str,
        tokens: &[Token],
    ) -> (TemplateId, Arc<str>) {
        let mut text = String::with_capacity(buf.len());
        let mut ends = Vec::with_capacity(tokens.len());
        for t in tokens {
            if !ends.is_empty() {
                text.push(' ');
            }
            text.push_str(token_str(buf, t));
            ends.push(text.len() as u32);
        }
        let mut hasher = Xxh3::new();
        hasher.update(service.as_bytes());
        hasher.update(&[0xff]);
        hasher.update(text.as_bytes());
        let text: Arc<str> = Arc::from(text);
        let mut id = hasher.digest();
        while self.ids.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        let service = match self.services.get_key_value(service) {
            Some((name, _)) => name.clone(),
            None => Arc::from(service),
        };
        let mut t = Template {
            id: TemplateId(id),
            service,
            text: text.clone(),
            ends: ends.into_boxed_slice(),
            leaf,
            severity,
            counts: [0; 5],
            first_seen_ms: ts_ms,
            last_seen_ms: ts_ms,
            samples: Vec::new(),
            touched: self.tick,
            newer: NONE,
            older: NONE,
        };
        record(&mut t, severity, ts_ms);
        add_sample(
            &mut t,
            severity,
            body,
            ts_ms,
            self.config.max_samples,
            self.config.max_sample_bytes,
        );
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(t);
                s
            }
            None => {
                self.slots.push(Some(t));
                (self.slots.len() - 1) as u32
            }
        };
        self.ids.insert(id, slot);
        self.nodes[leaf as usize].templates.push(slot);
        self.live += 1;
        self.push_newest(slot);
        (TemplateId(id), text)
    }

    /// Evicts the template in `slot` and prunes the branch it leaves empty, up to (not
    /// including) `keep`.
    fn evict(&mut self, slot: u32, keep: u32) -> Option<TemplateId> {
        self.slots.get(slot as usize)?.as_ref()?;
        self.unlink(slot);
        let t = self.slots[slot as usize].take()?;
        self.free_slots.push(slot);
        self.ids.remove(&t.id.0);
        self.live -= 1;
        self.evictions += 1;
        let leaf = &mut self.nodes[t.leaf as usize].templates;
        if let Some(pos) = leaf.iter().position(|&s| s == slot) {
            leaf.swap_remove(pos);
        }
        let mut node = t.leaf;
        while node != keep && self.nodes[node as usize].is_empty() {
            let parent = self.nodes[node as usize].parent;
            self.nodes[node as usize] = Node::default();
            self.free_nodes.push(node);
            if parent == NONE {
                let len = t.ends.len() as u32;
                if let Some(tree) = self.services.get_mut(&*t.service) {
                    tree.by_len.remove(&len);
                    if tree.by_len.is_empty() {
                        self.services.remove(&*t.service);
                    }
                }
                break;
            }
            let p = &mut self.nodes[parent as usize];
            if p.wildcard == node {
                p.wildcard = NONE;
            } else {
                p.children.retain(|_, child| *child != node);
            }
            node = parent;
        }
        Some(t.id)
    }

    fn template_mut(&mut self, slot: u32) -> Option<&mut Template> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    fn unlink(&mut self, slot: u32) {
        let Some(t) = self.template_mut(slot) else {
            return;
        };
        let (newer, older) = (t.newer, t.older);
        t.newer = NONE;
        t.older = NONE;
        match self.template_mut(newer) {
            Some(n) => n.older = older,
            None => self.newest = older,
        }
        match self.template_mut(older) {
            Some(o) => o.newer = newer,
            None => self.oldest = newer,
        }
    }

    fn push_newest(&mut self, slot: u32) {
        let old_newest = self.newest;
        if let Some(t) = self.template_mut(slot) {
            t.newer = NONE;
            t.older = old_newest;
        }
        match self.template_mut(old_newest) {
            Some(n) => n.newer = slot,
            None => self.oldest = slot,
        }
        self.newest = slot;
    }

    fn touch(&mut self, slot: u32) {
        if self.newest != slot {
            self.unlink(slot);
            self.push_newest(slot);
        }
    }
}

#[inline]
fn token_str<'a>(buf: &'a str, t: &Token) -> &'a str {
    &buf[t.start as usize..t.end as usize]
}

/// The template token `tt` is a parameter that covers the line token `lt`: `<*>`, or `key=<*>`
/// and `lt` is `key=…`.
#[inline]
fn covers(tt: &str, lt: &str) -> bool {
    match tt.strip_suffix(WILDCARD) {
        Some("") => true,
        Some(key) => key.ends_with('=') && lt.starts_with(key),
        None => false,
    }
}

/// What a template token becomes when a line differs from it: `key=<*>` when both are
/// `key=…` with the same key, else `<*>`.
fn wildcard_for(tt: &str, lt: &str) -> String {
    match tt.find('=') {
        Some(eq) if lt.len() > eq && lt.as_bytes()[eq] == b'=' && tt[..eq] == lt[..eq] => {
            format!("{}{WILDCARD}", &tt[..=eq])
        }
        _ => WILDCARD.to_owned(),
    }
}

/// Turns positions where `t` and the line differ into `<*>` (or `key=<*>`); true if anything
/// changed.
fn generalise(t: &mut Template, buf: &str, tokens: &[Token]) -> bool {
    let differs = |t: &Template, k: usize, tok: &Token| {
        let (tt, lt) = (t.token(k), token_str(buf, tok));
        tt != lt && !covers(tt, lt)
    };
    if !tokens.iter().enumerate().any(|(k, tok)| differs(t, k, tok)) {
        return false;
    }
    let mut text = String::with_capacity(t.text.len());
    let mut ends = Vec::with_capacity(tokens.len());
    for (k, tok) in tokens.iter().enumerate() {
        if k > 0 {
            text.push(' ');
        }
        if differs(t, k, tok) {
            text.push_str(&wildcard_for(t.token(k), token_str(buf, tok)));
        } else {
            text.push_str(t.token(k));
        }
        ends.push(text.len() as u32);
    }
    t.text = Arc::from(text);
    t.ends = ends.into_boxed_slice();
    true
}

fn record(t: &mut Template, severity: Severity, ts_ms: i64) {
    t.counts[severity.index()] += 1;
    t.severity = t.severity.max(severity);
    t.first_seen_ms = t.first_seen_ms.min(ts_ms);
    t.last_seen_ms = t.last_seen_ms.max(ts_ms);
}

fn add_sample(
    t: &mut Template,
    severity: Severity,
    body: &str,
    ts_ms: i64,
    max_samples: usize,
    max_bytes: usize,
) {
    if t.samples.len() >= max_samples {
        return;
    }
    let line = cut(body.trim(), max_bytes);
    if t.samples.iter().any(|s| s.line == line) {
        return;
    }
    t.samples.push(Sample {
        ts_ms,
        severity,
        line: line.to_owned(),
    });
}

/// The first line of `body` that is not blank, without surrounding whitespace.
fn first_line(body: &str) -> &str {
    body.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
