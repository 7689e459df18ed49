"""Hostile netCDF inputs of `fkb predict` (README "Loading policy"), for a real Keras model (k3_dense_chain.keras,
5 inputs per column):
- a netCDF-4 file (made by ncgen, then its variable re-created by h5py) whose variable's bytes live in another file
  of the host (HDF5 external storage): the netCDF library would read that file through HDF5;
- a classic (CDF-1) file whose header declares 10^8 columns it does not hold: the netCDF library fills what is
  missing with zeros, so without the check FKB would allocate 3.7 GiB of nothing.
"""
import os
import shutil
import struct
import subprocess

import h5py
import numpy as np

MODEL = "{fixtures}/k3_dense_chain.keras"


def cdf1_header(ncol, nfeat):
    def name(s):
        b = s.encode()
        return struct.pack(">i", len(b)) + b + b"\0" * ((4 - len(b) % 4) % 4)

    head = b"CDF\x01" + struct.pack(">i", 0)
    head += struct.pack(">ii", 0x0A, 2) + name("column") + struct.pack(">i", ncol) + name("feature") + \
        struct.pack(">i", nfeat)
    head += struct.pack(">ii", 0, 0)  # no global attributes
    vsize = min(ncol * nfeat * 4, 2**32 - 1)
    var = name("x") + struct.pack(">iii", 2, 0, 1) + struct.pack(">ii", 0, 0) + struct.pack(">i", 5) + \
        struct.pack(">I", vsize)
    begin = len(head) + 8 + len(var) + 4
    return head + struct.pack(">ii", 0x0B, 1) + var + struct.pack(">i", begin)


def craft(out, fixtures):
    cases = []
    # Classic netCDF: 10^8 columns x 5 features declared, 64 bytes of data present.
    with open(os.path.join(out, "bomb_classic.nc"), "wb") as f:
        f.write(cdf1_header(100_000_000, 5) + b"\0" * 64)
    cases.append({
        "name": "netcdf_classic_shape_bomb",
        "argv": ["predict", MODEL, "--input", "{out}/bomb_classic.nc", "--dataset", "x", "--output", "{out}/y1.npy"],
        "expect": "'{out}/bomb_classic.nc' variable 'x' (column=100000000, feature=5) declares 1.9 GiB but "
                  "'{out}/bomb_classic.nc' holds 168 bytes; FKB reads only data stored inside the input file",
        "no_output": ["{out}/y1.npy"],
    })
    # netCDF-4 with an external-storage variable (needs ncgen, Debian package netcdf-bin).
    ncgen = shutil.which("ncgen")
    if ncgen:
        secret = os.path.join(out, "secret.bin")
        np.arange(50, dtype="<f4").tofile(secret)
        cdl = os.path.join(out, "x.cdl")
        with open(cdl, "w") as f:
            f.write("netcdf x {\ndimensions:\n  column = 10 ;\n  feature = 5 ;\nvariables:\n  float x(column, feature) ;\n"
                    "data:\n  x = " + ", ".join(str(i) for i in range(50)) + " ;\n}\n")
        nc = os.path.join(out, "external4.nc")
        subprocess.run([ncgen, "-4", "-o", nc, cdl], check=True)
        with h5py.File(nc, "r+") as f:
            del f["x"]
            d = f.create_dataset("x", shape=(10, 5), dtype="<f4", external=[(secret, 0, 200)])
            d.dims[0].attach_scale(f["column"])
            d.dims[1].attach_scale(f["feature"])
        cases.append({
            "name": "netcdf4_external_storage",
            "argv": ["predict", MODEL, "--input", "{out}/external4.nc", "--dataset", "x", "--output", "{out}/y2.npy"],
            "expect": "'{out}/external4.nc': variable 'x' is stored in an external file '{out}/secret.bin' (HDF5 "
                      "external storage); FKB reads only data stored inside the input file",
            "no_output": ["{out}/y2.npy"],
        })
    else:
        print("  (ncgen not found: the netCDF-4 external-storage case is not made; scripts/deps.sh installs netcdf-bin)")
    return cases
