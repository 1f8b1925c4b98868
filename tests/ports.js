'use strict';
// A free TCP port on 127.0.0.1 for a test's own server or telkin's listener (the port is
// released before use: the tests bind it at once, on a machine where nothing else races them).

const net = require('node:net');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

module.exports = { freePort };
