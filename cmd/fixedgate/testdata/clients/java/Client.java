import java.net.Authenticator;
import java.net.InetSocketAddress;
import java.net.PasswordAuthentication;
import java.net.ProxySelector;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

// Run with -Djdk.http.auth.tunneling.disabledSchemes= or the JDK never sends Basic to a proxy.
public class Client {
    public static void main(String[] args) throws Exception {
        // FIXEDGATE_PROXY=http://acme-corp:KEY@proxy.example.com:3128
        URI proxy = URI.create(System.getenv("FIXEDGATE_PROXY"));
        String[] userKey = String.valueOf(proxy.getUserInfo()).split(":", 2);
        HttpClient client = HttpClient.newBuilder()
            .proxy(ProxySelector.of(new InetSocketAddress(proxy.getHost(), proxy.getPort())))
            .authenticator(new Authenticator() {
                @Override
                protected PasswordAuthentication getPasswordAuthentication() {
                    if (getRequestorType() != RequestorType.PROXY || userKey.length != 2) {
                        return null;
                    }
                    return new PasswordAuthentication(userKey[0], userKey[1].toCharArray());
                }
            })
            .connectTimeout(Duration.ofSeconds(10))
            .build();
        HttpRequest req = HttpRequest.newBuilder(URI.create(System.getenv("TARGET_URL")))
            .timeout(Duration.ofSeconds(30))
            .build();
        HttpResponse<String> res = client.send(req, HttpResponse.BodyHandlers.ofString());
        System.out.println(res.statusCode() + " " + res.body());
        if (res.statusCode() != 200) {
            System.exit(1);
        }
    }
}
