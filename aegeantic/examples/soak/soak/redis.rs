//! A real redis-server of the soak's own, on a free loopback port, that a thread kills with
//! SIGKILL and restarts on a schedule. Its append-only file is written on every command, so
//! the bucket survives the kill as it would on a durable production server.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct RedisProcess {
    port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
    pub restarts: AtomicU64,
    pub up: AtomicBool,
}

impl RedisProcess {
    pub fn start() -> io::Result<Arc<Self>> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir =
            std::env::temp_dir().join(format!("aegeantic-soak-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let process = Arc::new(RedisProcess {
            port,
            dir,
            child: Mutex::new(None),
            restarts: AtomicU64::new(0),
            up: AtomicBool::new(false),
        });
        process.launch()?;
        Ok(process)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn launch(&self) -> io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                io::Error::new(error.kind(), format!("starting redis-server: {error}"))
            })?;
        *self.child.lock().unwrap() = Some(child);
        self.wait_until_ready()?;
        self.up.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// SIGKILL, by the child's PID, and reaped.
    pub fn kill(&self) {
        self.up.store(false, Ordering::Relaxed);
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_until_ready(&self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut reply = [0u8; 64];
                stream.set_read_timeout(Some(Duration::from_secs(2)))?;
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream
                        .read(&mut reply)
                        .is_ok_and(|n| reply[..n].starts_with(b"+PONG"))
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "redis-server on port {} did not answer PING within 20 s",
                self.port
            ),
        ))
    }

    /// Kills the server every `every` and starts it again after `outage`, until `stop` is set.
    pub fn chaos_monkey(
        self: &Arc<Self>,
        every: Duration,
        outage: Duration,
        stop: Arc<AtomicBool>,
    ) -> JoinHandle<io::Result<()>> {
        let process = Arc::clone(self);
        std::thread::spawn(move || {
            let mut next = Instant::now() + every;
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                process.kill();
                std::thread::sleep(outage);
                process.launch()?;
                process.restarts.fetch_add(1, Ordering::Relaxed);
                next = Instant::now() + every;
            }
            Ok(())
        })
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
