import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;
import java.util.Map;
import java.util.TreeMap;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.DelegateToFileSystem;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.server.datanode.DataNode;
import org.apache.hadoop.hdfs.server.namenode.NameNode;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.nodemanager.NodeManager;
import org.apache.hadoop.yarn.server.resourcemanager.ResourceManager;

/**
 * A one-node Hadoop cluster for the tests: a NameNode, a DataNode, a ResourceManager and a
 * NodeManager in this JVM, every one of them bound to HOST (the address of the network namespace
 * the test runs it in), on Hadoop's default ports: the namespace is the cluster's own host, so no
 * port is shared with anything else.
 *
 *   OneNodeCluster HOST WORK_DIR CLIENT_CONF_DIR SITE_DIR
 *
 * It writes the cluster's client configuration (core-site.xml, hdfs-site.xml, yarn-site.xml), what
 * a cluster's admins hand their users as HADOOP_CONF_DIR, then prints "READY" and runs until its
 * standard input closes or it is signalled; it then stops the NodeManager, which stops the
 * containers it started. SITE_DIR must be on its class path: the settings that every Configuration
 * of this JVM reads go there (see NioLocalFs).
 *
 * Hadoop's MiniYARNCluster is not used: it binds its daemons to "localhost", so its nodes and the
 * executors on them would advertise an address only the cluster's own host can reach.
 */
public final class OneNodeCluster {
    static final int NAMENODE = 8020, RESOURCE_MANAGER_WEB = 8088;

    public static void main(String[] args) throws Exception {
        String host = args[0];
        File work = new File(args[1]);
        File clientConf = new File(args[2]);
        writeSite(new File(args[3]));
        Configuration conf = configuration(host, work);
        // Four daemons in one JVM register the same metrics sources, as in Hadoop's own mini clusters.
        org.apache.hadoop.metrics2.lib.DefaultMetricsSystem.setMiniClusterMode(true);

        NameNode.format(conf);
        NameNode nameNode = new NameNode(conf);
        DataNode dataNode = DataNode.createDataNode(new String[0], conf);
        ResourceManager resourceManager = new ResourceManager();
        NodeManager nodeManager = new NodeManager();
        // Only the NodeManager needs a stop: it stops the containers it started, which run outside
        // this JVM. The other daemons' state dies with it, and their directories with the test's.
        Runtime.getRuntime().addShutdownHook(new Thread(nodeManager::stop));

        waitFor("the DataNode to register", () -> nameNode.getNamesystem().getNumLiveDataNodes() >= 1 && !nameNode.isInSafeMode());
        try (FileSystem fs = FileSystem.get(conf)) {
            // As on a real cluster: users' home directories, and a world-writable /tmp.
            fs.mkdirs(new org.apache.hadoop.fs.Path("/user"), new FsPermission((short) 0755));
            fs.mkdirs(new org.apache.hadoop.fs.Path("/tmp"));
            fs.setPermission(new org.apache.hadoop.fs.Path("/tmp"), new FsPermission((short) 01777));
        }
        resourceManager.init(conf);
        resourceManager.start();
        nodeManager.init(new YarnConfiguration(conf));
        nodeManager.start();
        waitFor("the NodeManager to register", () -> resourceManager.getRMContext().getRMNodes().size() >= 1
                && resourceManager.getResourceScheduler().getNumClusterNodes() >= 1);

        writeClientConfiguration(host, clientConf);
        System.out.println("READY");
        System.out.flush();
        // Until the test closes our standard input (or it dies, and with it the pipe).
        while (System.in.read() != -1) { }
        // A container still running is mostly an application master that has just unregistered:
        // it exits by itself within a second or two. The NodeManager's stop, which kills what is
        // left, takes 15 s more (it waits for the applications, then for its monitor).
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (containersRunning(nodeManager) && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        if (containersRunning(nodeManager)) {
            nodeManager.stop();
        }
        Runtime.getRuntime().halt(0);  // Hadoop's own shutdown hooks would take seconds more
    }

    static Configuration configuration(String host, File work) {
        Configuration conf = new YarnConfiguration(new HdfsConfiguration());
        conf.set("hadoop.tmp.dir", new File(work, "tmp").getAbsolutePath());
        // Its default is /tmp/hadoop-yarn-<user>, not under hadoop.tmp.dir: it would outlive the cluster.
        conf.set("yarn.node-attribute.fs-store.root-dir", new File(work, "node-attribute").toURI().toString());
        conf.set("fs.defaultFS", "hdfs://" + host + ":" + NAMENODE);
        conf.set("dfs.namenode.rpc-address", host + ":" + NAMENODE);
        conf.set("dfs.namenode.http-address", host + ":9870");
        conf.set("dfs.namenode.name.dir", new File(work, "name").getAbsolutePath());
        conf.set("dfs.datanode.data.dir", new File(work, "data").getAbsolutePath());
        conf.set("dfs.datanode.address", host + ":9866");
        conf.set("dfs.datanode.http.address", host + ":9864");
        conf.set("dfs.datanode.ipc.address", host + ":9867");
        conf.set("dfs.datanode.hostname", host);
        conf.setInt("dfs.replication", 1);
        // A test machine's disk may be nearly full; the one node must still take blocks.
        conf.setLong("dfs.datanode.du.reserved", 0);

        conf.set("yarn.resourcemanager.hostname", host);
        conf.set("yarn.resourcemanager.webapp.address", host + ":" + RESOURCE_MANAGER_WEB);
        conf.set("yarn.nodemanager.hostname", host);
        conf.set("yarn.nodemanager.address", host + ":8041");
        conf.set("yarn.nodemanager.localizer.address", host + ":8040");
        conf.set("yarn.nodemanager.webapp.address", host + ":8042");
        conf.set("yarn.nodemanager.local-dirs", new File(work, "nm-local").getAbsolutePath());
        conf.set("yarn.nodemanager.log-dirs", new File(work, "nm-logs").getAbsolutePath());
        conf.setInt("yarn.nodemanager.resource.memory-mb", 6144);
        conf.setInt("yarn.nodemanager.resource.cpu-vcores", 4);
        // What an admin may give every container: here, JVMs that live seconds in the tests compile
        // with C1 only and collect with one thread (the tests' 2 cores are the budget).
        conf.set("yarn.nodemanager.admin-env", "MALLOC_ARENA_MAX=$MALLOC_ARENA_MAX,JAVA_TOOL_OPTIONS=-XX:TieredStopAtLevel=1 -XX:+UseSerialGC");
        conf.setBoolean("yarn.nodemanager.pmem-check-enabled", false);
        conf.setBoolean("yarn.nodemanager.vmem-check-enabled", false);
        conf.setFloat("yarn.nodemanager.disk-health-checker.max-disk-utilization-per-disk-percentage", 100.0f);
        conf.setInt("yarn.nodemanager.disk-health-checker.min-free-space-per-disk-mb", 0);
        conf.setInt("yarn.nodemanager.delete.debug-delay-sec", 0);
        conf.setInt("yarn.scheduler.minimum-allocation-mb", 256);
        conf.setBoolean("yarn.timeline-service.enabled", false);
        conf.setBoolean("yarn.log-aggregation-enable", false);
        // Two queues, as a shared cluster has; application masters may take half of each.
        conf.set("yarn.scheduler.capacity.root.queues", "default,etl");
        conf.set("yarn.scheduler.capacity.root.default.capacity", "50");
        conf.set("yarn.scheduler.capacity.root.etl.capacity", "50");
        conf.set("yarn.scheduler.capacity.root.default.maximum-capacity", "100");
        conf.set("yarn.scheduler.capacity.root.etl.maximum-capacity", "100");
        conf.set("yarn.scheduler.capacity.maximum-am-resource-percent", "0.5");
        // The node's health and its containers' ends reach the ResourceManager within a second.
        conf.setLong("yarn.resourcemanager.nodemanagers.heartbeat-interval-ms", 250);
        return conf;
    }

    /** What a cluster's users are given: where the NameNode and the ResourceManager are. */
    static void writeClientConfiguration(String host, File dir) throws IOException {
        dir.mkdirs();
        Map<String, String> core = new TreeMap<>(), hdfs = new TreeMap<>(), yarn = new TreeMap<>();
        core.put("fs.defaultFS", "hdfs://" + host + ":" + NAMENODE);
        hdfs.put("dfs.replication", "1");
        yarn.put("yarn.resourcemanager.hostname", host);
        yarn.put("yarn.resourcemanager.webapp.address", host + ":" + RESOURCE_MANAGER_WEB);
        write(new File(dir, "core-site.xml"), core);
        write(new File(dir, "hdfs-site.xml"), hdfs);
        write(new File(dir, "yarn-site.xml"), yarn);
    }

    static void write(File file, Map<String, String> properties) throws IOException {
        Configuration conf = new Configuration(false);
        properties.forEach(conf::set);
        Path partial = file.toPath().resolveSibling(file.getName() + ".partial");
        try (OutputStream out = new FileOutputStream(partial.toFile())) {
            conf.writeXml(out);
        }
        Files.move(partial, file.toPath(), StandardCopyOption.ATOMIC_MOVE);
    }

    interface Check { boolean holds() throws Exception; }

    static void waitFor(String what, Check check) throws Exception {
        long deadline = System.nanoTime() + 120_000_000_000L;
        while (!check.holds()) {
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("gave up after 120 s waiting for " + what);
            }
            Thread.sleep(100);
        }
    }

    static boolean containersRunning(NodeManager nodeManager) {
        return nodeManager.getNMContext().getContainers().values().stream().anyMatch(container -> !container.isContainerInFinalStates());
    }

    static final String SITE = "one-node-cluster-site.xml";

    /** Settings for every Configuration of this JVM, the ones Hadoop makes of its own too: the
     * NodeManager's localizer reads its local file system from a new Configuration. */
    static void writeSite(File dir) throws IOException {
        Map<String, String> site = new TreeMap<>();
        site.put("fs.AbstractFileSystem.file.impl", NioLocalFs.class.getName());
        dir.mkdirs();
        write(new File(dir, SITE), site);
        Configuration.addDefaultResource(SITE);
    }

    /**
     * The local file system, with permissions set by a system call, as a node with Hadoop's native
     * library sets them. Without that library Hadoop runs one chmod process per file: localizing
     * a Python environment of thousands of files took the NodeManager half a minute for each
     * application (the tests' clusters have no native library; real ones do).
     */
    public static final class NioLocalFs extends DelegateToFileSystem {
        public NioLocalFs(URI uri, Configuration conf) throws IOException, URISyntaxException {
            super(uri, new NioRawLocalFileSystem(), conf, "file", false);
        }

        @Override
        public int getUriDefaultPort() {
            return -1;
        }

        @Override
        public boolean isValidName(String src) {
            return true;  // as Hadoop's own local file system: each OS has its own rules
        }
    }

    static final class NioRawLocalFileSystem extends RawLocalFileSystem {
        private static final PosixFilePermission[] BITS = {  // from 0400 down to 0001
            PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_EXECUTE,
            PosixFilePermission.GROUP_READ, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_EXECUTE,
            PosixFilePermission.OTHERS_READ, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_EXECUTE};

        @Override
        public void setPermission(org.apache.hadoop.fs.Path path, FsPermission permission) throws IOException {
            int mode = permission.toShort();
            Set<PosixFilePermission> set = EnumSet.noneOf(PosixFilePermission.class);
            for (int bit = 0; bit < BITS.length; bit++) {
                if ((mode & (0400 >> bit)) != 0) {
                    set.add(BITS[bit]);
                }
            }
            Files.setPosixFilePermissions(pathToFile(path).toPath(), set);
        }
    }
}
