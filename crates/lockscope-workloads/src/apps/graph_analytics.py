# graph-analytics (paper Table 7; CloudSuite's graph analytics): PageRank
# on Apache Spark in local mode (pyspark from PyPI, Debian's JRE). The
# graph is generated: 10,000 pages, each linking to 1 to 10 others drawn
# with a preference for low page numbers, so a few pages are popular as on
# the web. One operation: one PageRank iteration over every link.
import atexit
import os
import random

sql = need("pyspark.sql", "pyspark", installer="pip install")
need_program("java", "default-jre-headless")

PAGES, DAMPING = 10000, 0.85


def setup():
    # Loopback only: gVisor's sandbox and the microVM have no other network,
    # and Spark would otherwise look up this machine's name.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("SPARK_LOCAL_DIRS", os.path.abspath("spark"))
    # Its Python workers: this interpreter, whatever python3 is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        sql.SparkSession.builder.master("local[2]")
        .appName(WORKLOAD)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    atexit.register(spark.stop)
    spark.sparkContext.setLogLevel("ERROR")
    rng = random.Random(0)
    edges = [(page, int(PAGES * rng.random() ** 3)) for page in range(PAGES) for _ in range(rng.randint(1, 10))]
    links = spark.sparkContext.parallelize(edges, 2).groupByKey().mapValues(list).cache()
    ranks = checkpointed(links.mapValues(lambda _: 1.0))
    ranks.count()
    return {"links": links, "ranks": ranks}


def checkpointed(rdd):
    """The RDD kept and its lineage cut, so every iteration is the same work."""
    rdd.localCheckpoint()
    return rdd


def contributions(page_links_rank):
    _, (targets, rank) = page_links_rank
    for target in targets:
        yield target, rank / len(targets)


def operation(state):
    contribs = state["links"].join(state["ranks"]).flatMap(contributions)
    ranks = contribs.reduceByKey(lambda a, b: a + b).mapValues(lambda r: (1 - DAMPING) + DAMPING * r)
    state["ranks"] = checkpointed(ranks)
    ranks.count()
    return 1


serve("iteration", setup, operation)
