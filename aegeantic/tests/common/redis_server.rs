//! A real redis-server on loopback, started for a test and killed when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    password: Option<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::launch(free_port(), None)
    }

    /// A server on a free port with `extra` arguments, e.g. `--cluster-enabled yes`.
    pub fn start_with_args(extra: &[String]) -> Self {
        Self::launch_with(free_port(), None, extra)
    }

    pub fn start_with_password(password: &str) -> Self {
        Self::launch(free_port(), Some(password.to_owned()))
    }

    /// Starts a server again on the same port, after `kill`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill the server first");
        *self = Self::launch(self.port, self.password.take());
    }

    fn launch(port: u16, password: Option<String>) -> Self {
        Self::launch_with(port, password, &[])
    }

    fn launch_with(port: u16, password: Option<String>, extra: &[String]) -> Self {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .spawn()
            .expect("redis-server must be installed: ./test.sh installs it");
        let server = RedisServer {
            child: Some(child),
            port,
            password,
        };
        server.wait_until_ready();
        server
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server still runs (was not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends one inline command and returns the raw reply.
    pub fn command(&self, line: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        if let Some(password) = &self.password {
            stream
                .write_all(format!("AUTH {password}\r\n").as_bytes())
                .unwrap();
            read_reply(&mut stream);
        }
        stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        read_reply(&mut stream)
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                if stream.write_all(b"PING\r\n").is_ok() {
                    let reply = read_reply(&mut stream);
                    if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") {
                        return;
                    }
                }
            }
            // Often enough that a test can time a restart to a few milliseconds.
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("redis-server on port {} did not start", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_reply(stream: &mut TcpStream) -> String {
    let mut buffer = [0u8; 4096];
    let n = stream.read(&mut buffer).unwrap_or(0);
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}
