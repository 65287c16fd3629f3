// pgjdbc through sluice: each query prepared once and run 12 times, so the driver switches to a
// server-side prepared statement (after prepareThreshold = 5 runs) and then binds it without a
// Describe, in binary for the integer columns. Prints "run:value|value|..." for each row.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;

public class PreparedMasking {
    public static void main(String[] args) throws Exception {
        try (Connection conn = DriverManager.getConnection(args[0], args[1], args[2])) {
            for (int q = 3; q < args.length; q++) {
                try (PreparedStatement ps = conn.prepareStatement(args[q])) {
                    for (int run = 0; run < 12; run++) {
                        ps.setInt(1, run % 2 + 1);
                        try (ResultSet rs = ps.executeQuery()) {
                            int columns = rs.getMetaData().getColumnCount();
                            while (rs.next()) {
                                StringBuilder line = new StringBuilder().append(run).append(':');
                                for (int i = 1; i <= columns; i++) {
                                    line.append(i > 1 ? "|" : "").append(rs.getString(i));
                                }
                                System.out.println(line);
                            }
                        }
                    }
                }
            }
        }
    }
}
