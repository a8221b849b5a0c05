// A JDBC client for the data proxy's test: connects with the URL it is given
// (TLS, verify-full, a client certificate) and runs one prepared statement
// with a bound value, printing the answer. Run as a single-file program:
//   java -cp /usr/share/java/postgresql.jar Query.java URL
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;

public class Query {
    public static void main(String[] args) throws Exception {
        try (Connection connection = DriverManager.getConnection(args[0]);
             PreparedStatement statement =
                 connection.prepareStatement("SELECT ? * 7 AS answer, current_setting('application_name')")) {
            statement.setInt(1, 6);
            try (ResultSet rows = statement.executeQuery()) {
                while (rows.next()) {
                    System.out.println("answer=" + rows.getInt(1) + " app=" + rows.getString(2));
                }
            }
        }
    }
}
