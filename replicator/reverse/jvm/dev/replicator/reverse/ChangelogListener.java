package dev.replicator.reverse;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.Label;
import org.neo4j.graphdb.Node;
import org.neo4j.graphdb.Relationship;
import org.neo4j.graphdb.ResourceIterator;
import org.neo4j.graphdb.Transaction;
import org.neo4j.graphdb.event.LabelEntry;
import org.neo4j.graphdb.event.PropertyEntry;
import org.neo4j.graphdb.event.TransactionData;
import org.neo4j.graphdb.event.TransactionEventListener;

/**
 * Writes, inside each committing transaction, one changelog node per entity or relationship of an
 * enabled namespace that the transaction changed: {@code (:ReplicatorChange {ns, seq, n, ts_ms, kind,
 * op, id, ...})}.
 *
 * <p>Commit order: {@code seq} is taken from the namespace's {@code (:ReplicatorReverse)} node under its
 * write lock, which the transaction holds until its commit has completed, so a later seq always
 * belongs to a later commit; every row of one transaction shares its seq ({@code n} orders them). The
 * rows are written in the transaction they describe: both commit, or neither does (a crash or restart
 * of Neo4j loses neither).
 *
 * <p>Ids: an entity node or relationship of the namespace without an integer {@code id} gets the next
 * one from the same node's counters (seeded by the cutover above the store's ids), so every row the
 * changelog names has the id the store will give it. Likewise the store's NOT NULL columns a writer
 * left out: {@code created_at} and {@code updated_at} (the commit time), an entity's {@code
 * observations} (empty), so that the store and the graph hold the same values.
 *
 * <p>Rows: {@code op 'u'} (created or changed: the full image after the transaction, each property
 * as {@code v.<name>}; relationships add {@code from_id}, {@code to_id}, {@code rel_type}) or {@code op
 * 'd'} (deleted, or no longer carrying the namespace's label: only {@code id}). Placeholder nodes
 * ({@code _placeholder: true}) are the forward sink's and are never captured.
 *
 * <p>The forward sink's transactions (metadata {@code replicator: sink}) are the store's own rows: they
 * are not captured, but raise the id counters above the ids they write, so capture can be on before
 * the cutover's switch (no write of the runtime after it can be missed) and ids still never collide.
 *
 * <p>Adoption: the namespace's node may name other labels ({@code adopt}, e.g. {@code ["Memory"]} for the
 * mcp layout, set by `replicator`). A node carrying one of them but neither the namespace's label nor an
 * {@code id} is an entity another client created (mcp-neo4j-memory writes {@code :Memory} nodes alone):
 * it is captured as a new entity, given the namespace's label and the next id in its own transaction,
 * so later changes to it are changes of the same row. What its properties mean is `replicator`'s
 * business (the layout), not this listener's.
 *
 * <p>Fence: while the namespace's node has {@code fenced} (a message), every transaction changing the
 * namespace fails with that message, except the forward sink's; {@code capture: false} stops capture.
 */
public final class ChangelogListener implements TransactionEventListener<Object> {
    static final Label CONFIG = Label.label("ReplicatorReverse");
    static final Label CHANGE = Label.label("ReplicatorChange");
    static final Label PROBE = Label.label("ReplicatorReverseProbe");
    static final String PREFIX = "v.";
    /** Transaction metadata {@code replicator: sink}: the forward Neo4j sink, which passes the fence. */
    static final String SINK = "sink";
    /** Stamped on probe nodes, so that `replicator` can prove the plugin is loaded before it relies on it. */
    static final String VERSION = "1";

    @Override
    public Object beforeCommit(TransactionData data, Transaction tx, GraphDatabaseService db) {
        for (Node node : data.createdNodes()) {
            if (node.hasLabel(PROBE) && !data.isDeleted(node)) {
                node.setProperty("plugin", VERSION);
            }
        }
        List<Node> configs = new ArrayList<>();
        try (ResourceIterator<Node> found = tx.findNodes(CONFIG)) {
            found.forEachRemaining(configs::add);
        }
        for (Node config : configs) {
            Object ns = config.getProperty("ns", null);
            if (ns instanceof String label && !data.isDeleted(config)) {
                capture(data, tx, config, Label.label(label));
            }
        }
        return null;
    }

    private static void capture(TransactionData data, Transaction tx, Node config, Label ns) {
        Changes changes = Changes.of(data, ns, adopted(config));
        if (changes.isEmpty()) {
            return;
        }
        tx.acquireWriteLock(config); // held until this commit completes: seq order is commit order
        if (SINK.equals(data.metaData().get("replicator"))) {
            follow(config, changes); // the store's own rows coming forward: not captured, ids stay above
            return;
        }
        // The fence (rollback): read under the lock, so no transaction committing after the fence's
        // own commit gets through. Only the replicator's forward sink passes (transaction metadata).
        Object fenced = config.getProperty("fenced", null);
        if (fenced instanceof String message && !SINK.equals(data.metaData().get("replicator"))) {
            throw new IllegalStateException(message);
        }
        if (Boolean.FALSE.equals(config.getProperty("capture", Boolean.TRUE))) {
            return; // rolled back: the store is the truth again, the forward sink writes here
        }
        long seq = asLong(config.getProperty("head_seq", 0L)) + 1;
        config.setProperty("head_seq", seq);
        long now = System.currentTimeMillis();
        config.setProperty("head_ts_ms", now);
        long nextEntity = asLong(config.getProperty("next_entity_id", 1L));
        long nextRelation = asLong(config.getProperty("next_relation_id", 1L));
        for (Node node : changes.entityUpserts) {
            if (!node.hasLabel(ns)) {
                node.addLabel(ns); // adopted: another client's new entity is the namespace's from now on
            }
            nextEntity = assignId(node, nextEntity);
            stamp(node, now);
            if (!node.hasProperty("observations")) {
                node.setProperty("observations", new String[0]);
            }
        }
        for (Relationship rel : changes.relationUpserts) {
            nextRelation = assignId(rel, nextRelation);
            stamp(rel, now);
        }
        config.setProperty("next_entity_id", nextEntity);
        config.setProperty("next_relation_id", nextRelation);
        int n = 0;
        String name = ns.name();
        for (long id : changes.relationDeletes) {
            row(tx, name, seq, n++, now, "relation", "d", id);
        }
        for (long id : changes.entityDeletes) {
            row(tx, name, seq, n++, now, "entity", "d", id);
        }
        for (Node node : changes.entityUpserts) {
            Node row = row(tx, name, seq, n++, now, "entity", "u", asLong(node.getProperty("id")));
            copy(node.getAllProperties(), row);
        }
        for (Relationship rel : changes.relationUpserts) {
            Node row = row(tx, name, seq, n++, now, "relation", "u", asLong(rel.getProperty("id")));
            row.setProperty("from_id", asLong(rel.getStartNode().getProperty("id")));
            row.setProperty("to_id", asLong(rel.getEndNode().getProperty("id")));
            row.setProperty("rel_type", rel.getType().name());
            copy(rel.getAllProperties(), row);
        }
    }

    /** The labels the namespace adopts (its node's {@code adopt}), none when it names none. */
    private static List<Label> adopted(Node config) {
        List<Label> labels = new ArrayList<>();
        if (config.getProperty("adopt", null) instanceof String[] names) {
            for (String name : names) {
                labels.add(Label.label(name));
            }
        }
        return labels;
    }

    /** Raise the id counters above every id the forward sink writes, so ids given here never collide. */
    private static void follow(Node config, Changes changes) {
        long nextEntity = asLong(config.getProperty("next_entity_id", 1L));
        long nextRelation = asLong(config.getProperty("next_relation_id", 1L));
        for (Node node : changes.entityUpserts) {
            if (node.getProperty("id", null) instanceof Long id && id >= nextEntity) {
                nextEntity = id + 1;
            }
        }
        for (Relationship rel : changes.relationUpserts) {
            if (rel.getProperty("id", null) instanceof Long id && id >= nextRelation) {
                nextRelation = id + 1;
            }
        }
        config.setProperty("next_entity_id", nextEntity);
        config.setProperty("next_relation_id", nextRelation);
    }

    private static long assignId(org.neo4j.graphdb.Entity entity, long next) {
        Object id = entity.getProperty("id", null);
        if (id instanceof Long || id instanceof Integer) {
            return Math.max(next, asLong(id) + 1);
        }
        entity.setProperty("id", next);
        return next + 1;
    }

    /** The store's NOT NULL timestamps, set where a writer left them out, so both sides hold the same. */
    private static void stamp(org.neo4j.graphdb.Entity entity, long now) {
        for (String key : new String[] {"created_at", "updated_at"}) {
            if (!entity.hasProperty(key)) {
                entity.setProperty(key, now);
            }
        }
    }

    private static Node row(Transaction tx, String ns, long seq, int n, long now, String kind, String op, long id) {
        Node row = tx.createNode(CHANGE);
        row.setProperty("ns", ns);
        row.setProperty("seq", seq);
        row.setProperty("n", n);
        row.setProperty("ts_ms", now);
        row.setProperty("kind", kind);
        row.setProperty("op", op);
        row.setProperty("id", id);
        return row;
    }

    private static void copy(Map<String, Object> properties, Node row) {
        for (Map.Entry<String, Object> property : properties.entrySet()) {
            row.setProperty(PREFIX + property.getKey(), property.getValue());
        }
    }

    static long asLong(Object value) {
        return ((Number) value).longValue();
    }

    @Override
    public void afterCommit(TransactionData data, Object state, GraphDatabaseService db) {}

    @Override
    public void afterRollback(TransactionData data, Object state, GraphDatabaseService db) {}

    /** What one transaction changed in one namespace, read from TransactionData before anything is written. */
    static final class Changes {
        final List<Node> entityUpserts = new ArrayList<>();
        final List<Relationship> relationUpserts = new ArrayList<>();
        final List<Long> entityDeletes = new ArrayList<>();
        final List<Long> relationDeletes = new ArrayList<>();

        boolean isEmpty() {
            return entityUpserts.isEmpty() && relationUpserts.isEmpty() && entityDeletes.isEmpty()
                    && relationDeletes.isEmpty();
        }

        static Changes of(TransactionData data, Label ns, List<Label> adopt) {
            Changes changes = new Changes();
            Map<String, Node> touched = new LinkedHashMap<>();
            Set<String> deletedInNs = new HashSet<>();
            Map<String, Object> deletedIds = new HashMap<>();
            for (Node node : data.createdNodes()) {
                touched.put(node.getElementId(), node);
            }
            for (PropertyEntry<Node> entry : data.assignedNodeProperties()) {
                touched.put(entry.entity().getElementId(), entry.entity());
            }
            for (PropertyEntry<Node> entry : data.removedNodeProperties()) {
                if (data.isDeleted(entry.entity())) {
                    if ("id".equals(entry.key())) {
                        deletedIds.put(entry.entity().getElementId(), entry.previouslyCommittedValue());
                    }
                } else {
                    touched.put(entry.entity().getElementId(), entry.entity());
                }
            }
            for (LabelEntry entry : data.assignedLabels()) {
                touched.put(entry.node().getElementId(), entry.node());
            }
            for (LabelEntry entry : data.removedLabels()) {
                if (!entry.label().name().equals(ns.name())) {
                    continue;
                }
                Node node = entry.node();
                if (data.isDeleted(node)) {
                    deletedInNs.add(node.getElementId());
                } else if (node.getProperty("id", null) instanceof Long id) {
                    changes.entityDeletes.add(id); // left the namespace: gone from the store's view
                }
            }
            for (String elementId : deletedInNs) {
                Object id = deletedIds.get(elementId);
                if (id instanceof Long value) {
                    changes.entityDeletes.add(value);
                }
            }
            for (Node node : touched.values()) {
                if (!data.isDeleted(node) && member(node, ns, adopt)) {
                    changes.entityUpserts.add(node);
                }
            }
            relations(data, ns, adopt, changes, deletedInNs);
            return changes;
        }

        private static void relations(TransactionData data, Label ns, List<Label> adopt, Changes changes,
                Set<String> deletedInNs) {
            Map<String, Relationship> touched = new LinkedHashMap<>();
            for (Relationship rel : data.createdRelationships()) {
                touched.put(rel.getElementId(), rel);
            }
            for (PropertyEntry<Relationship> entry : data.assignedRelationshipProperties()) {
                touched.put(entry.entity().getElementId(), entry.entity());
            }
            for (PropertyEntry<Relationship> entry : data.removedRelationshipProperties()) {
                Relationship rel = entry.entity();
                if (!data.isDeleted(rel)) {
                    touched.put(rel.getElementId(), rel);
                } else if ("id".equals(entry.key()) && entry.previouslyCommittedValue() instanceof Long id
                        && wasInNamespace(data, rel, ns, deletedInNs)) {
                    changes.relationDeletes.add(id);
                }
            }
            for (Relationship rel : touched.values()) {
                if (!data.isDeleted(rel) && member(rel.getStartNode(), ns, adopt)
                        && member(rel.getEndNode(), ns, adopt)) {
                    changes.relationUpserts.add(rel);
                }
            }
        }

        private static boolean inNamespace(Node node, Label ns) {
            return node.hasLabel(ns) && !Boolean.TRUE.equals(node.getProperty("_placeholder", null));
        }

        /** In the namespace, or a node it adopts: an adopted label, no id yet (another client's new entity). */
        private static boolean member(Node node, Label ns, List<Label> adopt) {
            if (inNamespace(node, ns)) {
                return true;
            }
            if (node.hasLabel(ns) || node.hasProperty("id")) {
                return false;
            }
            for (Label label : adopt) {
                if (node.hasLabel(label)) {
                    return true;
                }
            }
            return false;
        }

        /** A deleted relationship belonged to the namespace when its start node does (or did, deleted with it). */
        private static boolean wasInNamespace(TransactionData data, Relationship rel, Label ns, Set<String> deletedInNs) {
            Node start = rel.getStartNode();
            if (data.isDeleted(start)) {
                return deletedInNs.contains(start.getElementId());
            }
            return start.hasLabel(ns);
        }
    }
}
