import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.io.ByteUnit;

/**
 * Runs Neo4j Community (the org.neo4j:neo4j library from Maven Central) as a server with Bolt enabled.
 *
 * <p>The Community jars ship no server launcher outside the tarball distribution, so `replicator stack`
 * compiles this one class against them and runs it. Usage:
 *
 * <pre>java -cp launcher:lib/* Neo4jLauncher HOME HOST PORT PAGECACHE_MB</pre>
 *
 * <p>When the environment variable NEO4J_PASSWORD is set, authentication is on and the built-in user
 * {@code neo4j} gets that password (no change required at first login); when it is unset, authentication
 * is off. The password travels in the environment, not in argv, so that it does not show in `ps`.
 *
 * <p>Blocks until SIGTERM/SIGINT, then shuts the databases down cleanly (checkpoint, release locks).
 */
public final class Neo4jLauncher {
    private Neo4jLauncher() {}

    public static void main(String[] args) throws InterruptedException {
        if (args.length != 4) {
            System.err.println("usage: Neo4jLauncher HOME HOST PORT PAGECACHE_MB");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        String host = args[1];
        int port = Integer.parseInt(args[2]);
        long pageCacheMb = Long.parseLong(args[3]);
        String password = System.getenv("NEO4J_PASSWORD");
        boolean auth = password != null && !password.isEmpty();

        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress(host, port))
                .setConfig(GraphDatabaseSettings.auth_enabled, auth)
                .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(pageCacheMb))
                .build();

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            dbms.shutdown();
            stopped.countDown();
        }, "neo4j-launcher-shutdown"));

        if (auth) {
            setPassword(dbms, password);
        }
        System.out.println("neo4j-launcher: bolt://" + host + ":" + port + " auth=" + (auth ? "on" : "off"));
        System.out.flush();
        stopped.await();
    }

    private static void setPassword(DatabaseManagementService dbms, String password) {
        try {
            dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME).executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED", Map.of("password", password));
        } catch (RuntimeException e) {
            // A restart with the same password is not an error: Neo4j refuses to "change" a password to itself.
            if (!String.valueOf(e.getMessage()).contains("cannot be the same")) {
                throw e;
            }
        }
    }
}
