// kiln info: the ONNX Runtime library, its providers, the CUDA driver and devices.
import { Command } from 'commander';
import { cuda } from '../../device';
import { runtime } from '../../runtime';

function info(): void {
  const rt = runtime();
  const gpus = cuda.devices();
  const lines = [
    `ONNX Runtime ${rt.version} (C API ${rt.apiVersion}) from ${rt.library}`,
    `providers: ${rt.providers.join(', ')}`,
    `global thread pools: intra-op ${rt.intraOpThreads || 'one per core'}, inter-op ${rt.interOpThreads || 'default'}, spinning ${rt.spinning ? 'on' : 'off'}`,
    gpus.problem ? `CUDA: ${gpus.problem}` : `CUDA: driver ${gpus.library} (CUDA ${gpus.driverVersion})`,
  ];
  for (const d of gpus.devices) {
    lines.push(`  cuda:${d.id} ${d.name}, ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB, compute ${d.computeCapability}, ${d.multiprocessors} SMs, PCI ${d.pciBusId}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

export const infoCommand = (): Command =>
  new Command('info').description('the ONNX Runtime library, its providers, the CUDA driver and devices').action(info);
