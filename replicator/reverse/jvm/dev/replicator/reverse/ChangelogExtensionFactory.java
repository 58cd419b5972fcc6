package dev.replicator.reverse;

import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.kernel.extension.ExtensionFactory;
import org.neo4j.kernel.extension.ExtensionType;
import org.neo4j.kernel.extension.context.ExtensionContext;
import org.neo4j.kernel.internal.GraphDatabaseAPI;
import org.neo4j.kernel.lifecycle.Lifecycle;
import org.neo4j.kernel.lifecycle.LifecycleAdapter;

/**
 * Registers the replicator's changelog listener on every user database when it starts (found by
 * ServiceLoader through META-INF/services: from Neo4j's plugins/ directory, or from the classpath of
 * an embedded server such as `replicator stack`'s). The listener does nothing until a namespace is
 * enabled by a {@code (:ReplicatorReverse {ns})} node, which `replicator` creates at the end of a cutover.
 */
public final class ChangelogExtensionFactory extends ExtensionFactory<ChangelogExtensionFactory.Dependencies> {
    public interface Dependencies {
        GraphDatabaseAPI graphDatabaseAPI();

        DatabaseManagementService databaseManagementService();
    }

    public ChangelogExtensionFactory() {
        super(ExtensionType.DATABASE, "replicator-changelog");
    }

    @Override
    public Lifecycle newInstance(ExtensionContext context, Dependencies dependencies) {
        GraphDatabaseAPI db = dependencies.graphDatabaseAPI();
        DatabaseManagementService dbms = dependencies.databaseManagementService();
        return new LifecycleAdapter() {
            private ChangelogListener listener;

            @Override
            public void start() {
                if ("system".equals(db.databaseName())) {
                    return;
                }
                listener = new ChangelogListener();
                dbms.registerTransactionEventListener(db.databaseName(), listener);
            }

            @Override
            public void stop() {
                if (listener != null) {
                    dbms.unregisterTransactionEventListener(db.databaseName(), listener);
                    listener = null;
                }
            }
        };
    }
}
