import java.io.IOException;
import java.util.Map;

import org.apache.solr.core.CoreContainer;
import org.apache.solr.embedded.JettyConfig;
import org.apache.solr.embedded.JettySolrRunner;

/**
 * A single-node Solr HTTP server on a free loopback port, for tests, the
 * demo and the benchmark (driven by ckanext.datagovuk.testing.localsolr).
 *
 * Usage: java LocalSolr SOLR_HOME
 *
 * Prints "port N" once every core has loaded, then serves until its standard
 * input closes: the parent needs no signal to stop it, and a parent that dies
 * leaves no server behind.  Exits 1 if Solr or one of its cores failed to
 * start; Jetty's threads would otherwise keep a failed JVM alive.
 */
public final class LocalSolr {
  public static void main(String[] args) {
    JettySolrRunner solr = new JettySolrRunner(args[0], JettyConfig.builder()
        .setPort(0)
        .setContext("/solr")
        .stopAtShutdown(true)
        .waitForLoadingCoresToFinish(60_000L)
        .build());
    int status = 1;
    try {
      solr.start();
      if (coresLoaded(solr.getCoreContainer())) {
        System.out.println("port " + solr.getLocalPort());
        System.out.flush();
        waitForEndOfInput();
        solr.stop();
        status = 0;
      }
    } catch (Exception failure) {
      failure.printStackTrace();
    }
    System.exit(status);
  }

  private static boolean coresLoaded(CoreContainer cores) {
    Map<String, CoreContainer.CoreLoadFailure> failures = cores.getCoreInitFailures();
    failures.forEach((core, failure) ->
        System.err.println("core " + core + ": " + failure.exception));
    return failures.isEmpty();
  }

  private static void waitForEndOfInput() throws IOException {
    while (System.in.read() != -1) {
      // Nothing is expected on stdin; only its end matters.
    }
  }
}
