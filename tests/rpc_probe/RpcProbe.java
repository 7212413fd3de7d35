import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import org.apache.spark.SparkConf;
import org.apache.spark.network.TransportContext;
import org.apache.spark.network.buffer.ManagedBuffer;
import org.apache.spark.network.client.ChunkReceivedCallback;
import org.apache.spark.network.client.TransportClient;
import org.apache.spark.network.client.TransportClientFactory;
import org.apache.spark.network.server.NoOpRpcHandler;
import org.apache.spark.network.shuffle.protocol.BlockTransferMessage;
import org.apache.spark.network.shuffle.protocol.OpenBlocks;
import org.apache.spark.network.shuffle.protocol.StreamHandle;
import org.apache.spark.network.util.MapConfigProvider;
import org.apache.spark.network.util.TransportConf;
import org.apache.spark.rpc.RpcEndpointRef;
import org.apache.spark.rpc.RpcEnv;
import org.apache.spark.storage.BlockId;

/**
 * Another user's attempt at a Spark driver, with Spark's own client classes and no secret (or,
 * with PROBE_SECRET set, a guessed one for the RPC):
 *
 *   RpcProbe DRIVER BLOCK_MANAGER APP_ID BLOCK_ID
 *
 * DRIVER and BLOCK_MANAGER are HOST:PORT, or a port alone on 127.0.0.1.
 * 1. asks the driver's BlockManagerMaster endpoint (spark://BlockManagerMaster@DRIVER) for its
 *    block managers and the location of BLOCK_ID, else ("-") of the first cached RDD block it
 *    finds by trying the first ids;
 * 2. opens that block at BLOCK_MANAGER and fetches its first chunk.
 *
 * Prints one line for each: "rpc ok ..." or "rpc refused ...", "fetch ok ..." or "fetch refused ...".
 */
public class RpcProbe {
    static final long TIMEOUT_MS = 60_000;
    static final int GUESSES = 200;

    public static void main(String[] args) throws Exception {
        String driver = address(args[0]);
        String blockManager = address(args[1]);
        String appId = args[2];
        String blockId = args[3];
        SparkConf conf = new SparkConf(false)
            .set("spark.rpc.askTimeout", TIMEOUT_MS + "ms")
            .set("spark.rpc.lookupTimeout", TIMEOUT_MS + "ms");
        String guess = System.getenv("PROBE_SECRET");
        if (guess != null) {
            conf.set("spark.authenticate", "true").set("spark.authenticate.secret", guess);
        }
        blockId = askStorage(conf, driver, blockId);
        fetchBlock(blockManager, appId, blockId);
        System.exit(0);  // Spark's non-daemon threads would keep the JVM
    }

    static String askStorage(SparkConf conf, String driver, String blockId) {
        RpcEnv env = null;
        try {
            org.apache.spark.SecurityManager security = new org.apache.spark.SecurityManager(
                conf, scala.Option.empty(), org.apache.spark.SecurityManager$.MODULE$.$lessinit$greater$default$3());
            env = RpcEnv.create("probe", "127.0.0.1", 0, conf, security, true);
            RpcEndpointRef master = env.setupEndpointRefByURI("spark://BlockManagerMaster@" + driver);
            Object memory = master.askSync(message("GetMemoryStatus$", null), scala.reflect.ClassTag$.MODULE$.apply(Object.class));
            // The block asked for, or else the first cached RDD block of the first few RDDs: ids are counted up from 0.
            List<String> names = new ArrayList<>();
            if (!"-".equals(blockId)) {
                names.add(blockId);
            }
            for (int rdd = 0; rdd < GUESSES; rdd++) {
                names.add("rdd_" + rdd + "_0");
            }
            String found = null;
            for (String name : names) {
                Object where = master.askSync(message("GetLocations", BlockId.apply(name)), scala.reflect.ClassTag$.MODULE$.apply(Object.class));
                if (!((scala.collection.Iterable<?>) where).isEmpty()) {
                    found = name + " at " + where;
                    blockId = name;
                    break;
                }
            }
            System.out.println("rpc ok: block managers " + memory + "; found " + found);
        } catch (Throwable error) {
            System.out.println("rpc refused: " + describe(error));
        } finally {
            if (env != null) {
                env.shutdown();
            }
        }
        return blockId;
    }

    /** HOST:PORT, a port alone meaning 127.0.0.1's. */
    static String address(String given) {
        return given.contains(":") ? given : "127.0.0.1:" + given;
    }

    /** A BlockManagerMaster message by its class's name (a case object, or a case class of one argument). */
    static Object message(String name, Object argument) throws ReflectiveOperationException {
        Class<?> type = Class.forName("org.apache.spark.storage.BlockManagerMessages$" + name);
        if (argument == null) {
            return type.getField("MODULE$").get(null);
        }
        return type.getConstructor(BlockId.class).newInstance(argument);
    }

    static void fetchBlock(String blockManager, String appId, String blockId) {
        TransportConf transport = new TransportConf("shuffle", new MapConfigProvider(Collections.emptyMap()));
        try (TransportContext context = new TransportContext(transport, new NoOpRpcHandler());
             TransportClientFactory factory = context.createClientFactory()) {
            TransportClient client = factory.createClient(blockManager.substring(0, blockManager.lastIndexOf(':')),
                                                        Integer.parseInt(blockManager.substring(blockManager.lastIndexOf(':') + 1)));
            ByteBuffer reply = client.sendRpcSync(new OpenBlocks(appId, "driver", new String[] {blockId}).toByteBuffer(), TIMEOUT_MS);
            StreamHandle stream = (StreamHandle) BlockTransferMessage.Decoder.fromByteBuffer(reply);
            CompletableFuture<Long> size = new CompletableFuture<>();
            client.fetchChunk(stream.streamId, 0, new ChunkReceivedCallback() {
                public void onSuccess(int chunk, ManagedBuffer buffer) {
                    size.complete(buffer.size());
                }

                public void onFailure(int chunk, Throwable error) {
                    size.completeExceptionally(error);
                }
            });
            System.out.println("fetch ok: " + size.get(TIMEOUT_MS, TimeUnit.MILLISECONDS) + " bytes of " + blockId);
        } catch (Throwable error) {
            System.out.println("fetch refused: " + describe(error));
        }
    }

    static String describe(Throwable error) {
        StringBuilder text = new StringBuilder();
        for (Throwable cause = error; cause != null; cause = cause.getCause()) {
            String message = String.valueOf(cause.getMessage()).split("\n", 2)[0];
            text.append(cause.getClass().getName()).append(": ").append(message).append(" | ");
        }
        return text.toString();
    }
}
