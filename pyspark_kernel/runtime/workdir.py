"""Relative paths on the shared driver resolve against each notebook's own directory.

A Spark driver resolves a relative path (``spark.read.csv("../data/x.csv")``, ``df.write.save("out")``,
``LOCATION 't'``) against Hadoop's working directory, which for local files is the JVM's current
directory: one per JVM, so one for every notebook on a shared driver. Hadoop gives each
FileSystem instance a working directory of its own, though, and Spark hands every session's
Hadoop configuration its runtime settings. So each notebook's session sets:

- ``fs.file.impl``: a LocalFileSystem whose working directory is ``WORKING_DIR_SETTING`` when set;
- ``fs.file.impl.disable.cache``: a file system for that configuration, not the JVM's cached one;
- ``WORKING_DIR_SETTING``: the notebook's directory.

The class is five instructions more than LocalFileSystem. It is written here as bytes (a class
file for Java 5, which every JVM loads, and whose verifier needs no stack map tables), so the
shared driver needs no compiler: its Java may be a runtime without javac.

Managed tables are not paths: they live in the warehouse of the catalog that a shared driver's
sessions share, spark-warehouse in the directory of the notebook that started it.

Spark's default warehouse is the URI of ``spark-warehouse`` in the JVM's directory, which Hadoop
then reads as a path, escapes and all: from ``/home/me/My Notebooks`` the tables land in a new
``/home/me/My%20Notebooks``. A kernel's driver there is given ``file:`` and the path as it is,
which Hadoop reads right (and still the local file system, as Spark's default is).
"""

from __future__ import annotations  # the kernel's Python may be older than the generator's

import io
import logging
import os
import pathlib
import struct
import zipfile

log = logging.getLogger(__name__)

CLASS_NAME = "pyspark_kernel.NotebookFileSystem"
WORKING_DIR_SETTING = "pyspark_kernel.working_dir"
JAR_NAME = "pyspark-kernel-workdir.jar"

PARENT = "org/apache/hadoop/fs/LocalFileSystem"
PATH = "org/apache/hadoop/fs/Path"
CONFIGURATION = "org/apache/hadoop/conf/Configuration"
INITIALIZE = ("initialize", "(Ljava/net/URI;Lorg/apache/hadoop/conf/Configuration;)V")
JAVA_5 = 49  # the last class file version verified without StackMapTable attributes
PUBLIC, SUPER = 0x0001, 0x0020
# Opcodes used below (JVM specification, chapter 6).
ALOAD_0, ALOAD_1, ALOAD_2, ALOAD_3, ASTORE_3 = 0x2A, 0x2B, 0x2C, 0x2D, 0x4E
DUP, RETURN, LDC_W, NEW, IFNULL = 0x59, 0xB1, 0x13, 0xBB, 0xC6
INVOKEVIRTUAL, INVOKESPECIAL = 0xB6, 0xB7


class Pool:
    """A class file's constant pool: each entry once, numbered from 1."""

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.index: dict[bytes, int] = {}

    def add(self, entry: bytes) -> int:
        if entry not in self.index:
            self.entries.append(entry)
            self.index[entry] = len(self.entries)
        return self.index[entry]

    def utf8(self, text: str) -> int:
        data = text.encode("utf-8")  # modified UTF-8 differs only for NUL and beyond the BMP: neither here
        return self.add(struct.pack(">BH", 1, len(data)) + data)

    def cls(self, name: str) -> int:
        return self.add(struct.pack(">BH", 7, self.utf8(name)))

    def string(self, text: str) -> int:
        return self.add(struct.pack(">BH", 8, self.utf8(text)))

    def method(self, owner: str, name: str, descriptor: str) -> int:
        name_and_type = self.add(struct.pack(">BHH", 12, self.utf8(name), self.utf8(descriptor)))
        return self.add(struct.pack(">BHH", 10, self.cls(owner), name_and_type))

    def bytes(self) -> bytes:
        return struct.pack(">H", len(self.entries) + 1) + b"".join(self.entries)


def code(pool: Pool, max_stack: int, max_locals: int, instructions: bytes) -> bytes:
    body = struct.pack(">HHI", max_stack, max_locals, len(instructions)) + instructions + struct.pack(">HH", 0, 0)
    return struct.pack(">HI", pool.utf8("Code"), len(body)) + body


def method(pool: Pool, name: str, descriptor: str, code_attribute: bytes) -> bytes:
    return struct.pack(">HHHH", PUBLIC, pool.utf8(name), pool.utf8(descriptor), 1) + code_attribute


def class_file() -> bytes:
    """The class: in Java,

        public class NotebookFileSystem extends LocalFileSystem {
            public void initialize(URI uri, Configuration conf) throws IOException {
                super.initialize(uri, conf);
                String dir = conf.get(WORKING_DIR_SETTING);
                if (dir != null) setWorkingDirectory(new Path(dir));
            }
        }
    """
    pool = Pool()
    this = pool.cls(CLASS_NAME.replace(".", "/"))
    parent = pool.cls(PARENT)
    constructor = bytes([ALOAD_0, INVOKESPECIAL]) + struct.pack(">H", pool.method(PARENT, "<init>", "()V")) + bytes([RETURN])
    initialize = b"".join([
        bytes([ALOAD_0, ALOAD_1, ALOAD_2, INVOKESPECIAL]), struct.pack(">H", pool.method(PARENT, *INITIALIZE)),
        bytes([ALOAD_2, LDC_W]), struct.pack(">H", pool.string(WORKING_DIR_SETTING)),
        bytes([INVOKEVIRTUAL]), struct.pack(">H", pool.method(CONFIGURATION, "get", "(Ljava/lang/String;)Ljava/lang/String;")),
        bytes([ASTORE_3, ALOAD_3, IFNULL]), struct.pack(">h", 15),  # to RETURN, 15 bytes on: this 3, then 12
        bytes([ALOAD_0, NEW]), struct.pack(">H", pool.cls(PATH)),
        bytes([DUP, ALOAD_3, INVOKESPECIAL]), struct.pack(">H", pool.method(PATH, "<init>", "(Ljava/lang/String;)V")),
        bytes([INVOKEVIRTUAL]), struct.pack(">H", pool.method(PARENT, "setWorkingDirectory", f"(L{PATH};)V")),
        bytes([RETURN]),
    ])
    methods = [method(pool, "<init>", "()V", code(pool, 1, 1, constructor)),
               method(pool, *INITIALIZE, code(pool, 4, 4, initialize))]
    return b"".join([
        struct.pack(">IHH", 0xCAFEBABE, 0, JAVA_5), pool.bytes(),
        struct.pack(">HHHHH", PUBLIC | SUPER, this, parent, 0, 0),  # no interfaces, no fields
        struct.pack(">H", len(methods)), *methods,
        struct.pack(">H", 0),  # no attributes
    ])


def jar_bytes() -> bytes:
    """A jar of the class alone, the same bytes every time (a fixed date)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as jar:
        jar.writestr(zipfile.ZipInfo(CLASS_NAME.replace(".", "/") + ".class", date_time=(2000, 1, 1, 0, 0, 0)), class_file())
    return buffer.getvalue()


def write_jar(directory: str) -> str:
    """The jar in ``directory``: its path. One already there with these bytes is kept as it is: a
    class-data-sharing archive maps only with the class path it was written with, down to each
    jar's modification time."""
    path = os.path.join(directory, JAR_NAME)
    try:
        with open(path, "rb") as handle:
            if handle.read() == jar_bytes():
                return path
    except OSError:
        log.debug("no working-directory jar in %s yet", directory, exc_info=True)
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "wb") as handle:
        handle.write(jar_bytes())
    os.replace(partial, path)
    return path


def server_settings(conf: dict, jar: str) -> dict:
    """The shared driver's JVM has the class on its class path, after the kernel's own."""
    found = conf.get("spark.driver.extraClassPath", "")
    return {"spark.driver.extraClassPath": os.pathsep.join(filter(None, [found, jar]))}


def session_settings(directory: str) -> dict:
    """What a notebook's session sets, for its relative paths to resolve against ``directory``."""
    return {"fs.file.impl": CLASS_NAME, "fs.file.impl.disable.cache": "true", WORKING_DIR_SETTING: directory}


def warehouse(conf: dict, directory: str) -> dict:
    """The warehouse setting for a driver started in ``directory``: Spark's own default, unless
    its URI would be misread as a path (see above); a Hive catalog's own (hive-site.xml) stands."""
    if "spark.sql.warehouse.dir" in conf or conf.get("spark.sql.catalogImplementation") == "hive":
        return {}
    path = os.path.join(os.path.abspath(directory), "spark-warehouse")
    if pathlib.Path(path).as_uri() == f"file://{path}":
        return {}
    return {"spark.sql.warehouse.dir": f"file:{path}"}
