// Runs queries through the PostgreSQL JDBC driver, same line protocol as the Go client:
// stdin: one query per line, optionally TAB + one string parameter; stdout: per query
// "COLUMNS name:type...", rows as TAB-separated text (\N for NULL), then "END n" or "ERROR state msg".
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;

public class JdbcCheck {
    public static void main(String[] args) throws Exception {
        String url = System.getenv("JDBC_URL");
        try (Connection conn = DriverManager.getConnection(url, System.getenv("PGUSER"), System.getenv("PGPASSWORD"))) {
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
            StringBuilder out = new StringBuilder();
            String line;
            while ((line = in.readLine()) != null) {
                String[] parts = line.split("\t", 2);
                try (PreparedStatement st = conn.prepareStatement(parts[0])) {
                    if (parts.length == 2) {
                        st.setString(1, parts[1]);
                    }
                    try (ResultSet rs = st.executeQuery()) {
                        ResultSetMetaData md = rs.getMetaData();
                        out.append("COLUMNS");
                        for (int i = 1; i <= md.getColumnCount(); i++) {
                            out.append('\t').append(md.getColumnLabel(i)).append(':').append(md.getColumnTypeName(i));
                        }
                        out.append('\n');
                        int n = 0;
                        while (rs.next()) {
                            for (int i = 1; i <= md.getColumnCount(); i++) {
                                if (i > 1) out.append('\t');
                                String v = rs.getString(i);
                                out.append(v == null ? "\\N" : v);
                            }
                            out.append('\n');
                            n++;
                        }
                        out.append("END ").append(n).append('\n');
                    }
                } catch (SQLException e) {
                    out.append("ERROR ").append(e.getSQLState()).append(' ').append(e.getMessage().replace('\n', ' ')).append('\n');
                }
            }
            System.out.print(out);
        }
    }
}
